#!/usr/bin/env bash
# Installs cargo-deny from crates.io into ~/.cargo/bin, once: later runs find it there.
# Built from source with its locked dependencies (no prebuilt binary is downloaded); the
# first build takes several minutes on a 2-core machine.
set -euo pipefail
version="0.20.2"
if cargo deny --version 2>/dev/null | grep -q " $version"; then
  exit 0
fi
echo "installing cargo-deny $version from crates.io (cargo install --locked; several minutes the first time)"
started=$(date +%s)
# Outside the workspace, so rust-toolchain.toml's pin is not needed to build the tool.
(cd / && cargo install --locked --quiet cargo-deny --version "$version")
echo "cargo-deny $version installed in $(( $(date +%s) - started )) s"
