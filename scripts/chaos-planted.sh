#!/usr/bin/env bash
# Shows that the chaos campaign can fail: builds the router with a bug planted on purpose
# (shared/src/planted.rs), runs a short campaign against it, and succeeds only if the
# campaign reports violations. BUG: delivered-before-answer | unguarded-paid.
#   scripts/chaos-planted.sh delivered-before-answer [--store mysql] [--seed S] [--minutes N]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bug="${1:?usage: scripts/chaos-planted.sh delivered-before-answer|unguarded-paid [wxpay-chaos options]}"
shift
case "$bug" in
  delivered-before-answer|unguarded-paid) ;;
  *) echo "unknown planted bug: $bug (delivered-before-answer, unguarded-paid)"; exit 2 ;;
esac

cargo build --quiet -p wxpay_functions -p wxpay-chaos --features wxpay-shared/planted-bugs
cp "$target/debug/wxpay_functions" "$target/debug/wxpay_functions-planted"
# The honest router back in place, so nothing else runs the planted one by mistake.
cargo build --quiet -p wxpay_functions -p wxpay-chaos

set +e
WXPAY_PLANTED_BUG="$bug" timeout 300 "$target/debug/wxpay-chaos" \
  --bin "$target/debug/wxpay_functions-planted" --seed 25 --minutes 0.5 "$@" | tee /tmp/chaos-planted-$$.log
status=${PIPESTATUS[0]}
set -e
rm -f "$target/debug/wxpay_functions-planted"
if [ "$status" -eq 1 ]; then
  echo "planted bug $bug: caught —"
  grep '^VIOLATION' /tmp/chaos-planted-$$.log | sed -E 's/ about .*//' | sort | uniq -c
  rm -f /tmp/chaos-planted-$$.log
  exit 0
fi
rm -f /tmp/chaos-planted-$$.log
echo "planted bug $bug was NOT caught (wxpay-chaos exited $status)"
exit 1
