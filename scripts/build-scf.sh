#!/usr/bin/env bash
# Builds Tencent SCF web-function / CloudBase HTTP-function packages.
#
# For each function it produces
#   dist/scf/<function>/   scf_bootstrap + the release binary (what `tcb fn deploy` uploads,
#                          see cloudbaserc.json), and
#   dist/<function>.zip    the same two files, for the SCF console or API.
#
# The binary is built for x86_64 Linux, statically linked against musl when the
# x86_64-unknown-linux-musl target and a musl C compiler (musl-gcc, Debian: musl-tools) are
# available, so it runs on whatever image the platform uses. Otherwise it falls back to the
# glibc target and says so; that binary needs a glibc at least as new as the build machine's.
#
# Usage: scripts/build-scf.sh [FUNCTION...]   (default: all five)
# Env:   SCF_TARGET=<rust target triple> to force a target; CARGO_TARGET_DIR is honoured
#        (a separate one keeps this long release build from locking target/ meanwhile).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

all=(wxpay_functions wxpay_order wxpay_callback wxpay_query wxpay_refund)
if [ "$#" -gt 0 ]; then
    functions=("$@")
else
    functions=("${all[@]}")
fi
for f in "${functions[@]}"; do
    case " ${all[*]} " in
        *" $f "*) ;;
        *) echo "build-scf: unknown function '$f' (known: ${all[*]})" >&2; exit 2 ;;
    esac
done

musl=x86_64-unknown-linux-musl
gnu=x86_64-unknown-linux-gnu

musl_cc() {
    # ring and the bundled SQLite are C: the musl target needs a musl C compiler.
    for cc in x86_64-linux-musl-gcc musl-gcc; do
        if command -v "$cc" >/dev/null 2>&1; then
            echo "$cc"
            return 0
        fi
    done
    return 1
}

target="${SCF_TARGET:-}"
if [ -z "$target" ]; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        echo "build-scf: adding the $musl target with rustup" >&2
        rustup target add "$musl" >/dev/null 2>&1 || true
    fi
    if rustup target list --installed 2>/dev/null | grep -qx "$musl" && musl_cc >/dev/null; then
        target="$musl"
    else
        target="$gnu"
        echo "build-scf: WARNING: building for $gnu (dynamically linked against glibc):" >&2
        echo "build-scf:   the $musl target or a musl C compiler is missing" >&2
        echo "build-scf:   (rustup target add $musl; apt-get install musl-tools)." >&2
        echo "build-scf:   The binary then needs a glibc no older than this machine's." >&2
    fi
fi

# cc-rs needs to be told which C compiler targets musl (unless the caller already did).
if [ "$target" = "$musl" ] && [ -z "${CC_x86_64_unknown_linux_musl:-}" ] && cc="$(musl_cc)"; then
    export "CC_x86_64_unknown_linux_musl=$cc"
fi

packages=()
for f in "${functions[@]}"; do
    packages+=(-p "$f")
done
echo "build-scf: cargo build --release --target $target ${packages[*]}" >&2
cargo build --release --locked --target "$target" "${packages[@]}"

zip_dir() {
    # zip keeps the executable bits SCF needs on scf_bootstrap and the binary; python3's
    # zipfile is the fallback, with the Unix modes set by hand.
    local dir="$1" out="$2"
    rm -f "$out"
    if command -v zip >/dev/null 2>&1; then
        (cd "$dir" && zip -q -X -r "$out" .)
    else
        python3 - "$dir" "$out" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        info = zipfile.ZipInfo.from_file(path, name)
        info.external_attr = (os.stat(path).st_mode & 0xFFFF) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as fh:
            z.writestr(info, fh.read())
PY
    fi
}

target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p dist/scf
for f in "${functions[@]}"; do
    stage="dist/scf/$f"
    rm -rf "$stage"
    mkdir -p "$stage"
    install -m 0755 "$target_dir/$target/release/$f" "$stage/$f"
    sed "s|^exec \./.*$|exec ./$f|" scf/scf_bootstrap >"$stage/scf_bootstrap"
    chmod 0755 "$stage/scf_bootstrap"
    grep -qx "exec ./$f" "$stage/scf_bootstrap" || {
        echo "build-scf: scf/scf_bootstrap has no 'exec ./<binary>' line to rewrite" >&2
        exit 1
    }
    zip_dir "$root/$stage" "$root/dist/$f.zip"
    size="$(du -h "dist/$f.zip" | cut -f1)"
    echo "build-scf: dist/$f.zip ($size, $target)"
done
