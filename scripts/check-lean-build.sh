#!/usr/bin/env bash
# The function binaries as `sam build` and scripts/build-scf.sh make them carry no embedded
# SQLite (contract §9: the `sqlite` feature is for local runs), and one started on a
# sqlite:// URL stops at start-up saying why instead of failing on its first call.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bins=(wxpay_functions wxpay_order wxpay_callback wxpay_query wxpay_refund)
pkgs=()
for b in "${bins[@]}"; do pkgs+=(-p "$b"); done

# Resolved as a build of the function packages alone (no dev-dependencies): rusqlite and its
# bundled C must not be among them.
carried=$(cargo tree --locked "${pkgs[@]}" -e normal,build -i rusqlite 2>/dev/null || true)
if [ -n "$carried" ]; then
  echo "the function binaries carry rusqlite:"
  echo "$carried"
  exit 1
fi
echo "rusqlite: not in the function binaries' dependency tree"

cargo build --quiet --locked -p wxpay_order
set +e
out=$(env -i PATH="$PATH" DATABASE_URL=sqlite:///tmp/lean-check.db "$target/debug/wxpay_order" 2>&1)
code=$?
set -e
if [ "$code" -ne 2 ] || ! grep -q "built without SQLite" <<<"$out"; then
  echo "wxpay_order on a sqlite:// URL: exit $code, expected 2 naming the missing SQLite:"
  echo "$out"
  exit 1
fi
echo "wxpay_order on a sqlite:// URL stops at start-up (exit 2): $(grep -o 'DATABASE_URL: this binary was built without SQLite[^;]*' <<<"$out")"
