#!/usr/bin/env bash
# Lints template.yaml with cfn-lint (from PyPI), installed into a project-local venv so
# that nothing on the machine has to be set up by hand and CI on a fresh machine works.
# Idempotent: the venv is reused once cfn-lint is in it. Quiet on success; prints the
# findings and exits non-zero when the template has errors.
#
# Usage: scripts/lint-template.sh [extra cfn-lint args]
# Env:   CFN_LINT_VENV (default .venv-tools), CFN_LINT_VERSION (default: a pinned range)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CFN_LINT_VENV:-$root/.venv-tools}"
# Pinned to a major version so a new cfn-lint rule set cannot break CI unannounced.
spec="${CFN_LINT_VERSION:-cfn-lint>=1.20,<2}"

if ! "$venv/bin/cfn-lint" --version >/dev/null 2>&1; then
    python3 -m venv "$venv" >/dev/null
    log="$(mktemp)"
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "lint-template: could not install $spec into $venv" >&2
        exit 1
    fi
    rm -f "$log"
fi

# cfn-lint exits 0 when clean, non-zero on errors (2), warnings (4) or info (8). Warnings
# are reported too, so they are fixed rather than piling up.
if ! out="$("$venv/bin/cfn-lint" "$@" -- "$root/template.yaml" 2>&1)"; then
    printf '%s\n' "$out" >&2
    echo "lint-template: cfn-lint found problems in template.yaml" >&2
    exit 1
fi
