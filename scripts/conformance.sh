#!/usr/bin/env bash
# Conformance: SDKs nobody here wrote drive the WeChat Pay sandbox (tools/wxpay-sim) through
# the merchant flow, in every platform mode:
#   Python wechatpayv3 (PyPI, conformance/python/requirements.txt)
#   Node   wechatpay-node-v3 and wechatpay-axios-plugin (npm, conformance/node/package-lock.json)
# Installs both (a venv under target/conformance, npm ci), starts the simulator on a free
# 127.0.0.1 port per mode, runs every suite, prints `conformance: N passed, M failed` and
# exits non-zero on any failure.
#
#   scripts/conformance.sh                         certificate, public-key and mixed
#   CONFORMANCE_MODES="public-key" scripts/conformance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/conformance"
modes="${CONFORMANCE_MODES:-certificate public-key mixed}"
mkdir -p "$work"

echo "-- building wxpay-sim"
cargo build --quiet -p wxpay-sim
sim="$target/debug/wxpay-sim"

# The venv is kept between runs and rebuilt when the pinned requirements change.
venv="$work/venv"
stamp="$venv/requirements.sha256"
want=$(sha256sum conformance/python/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "-- pip install -r conformance/python/requirements.txt"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r conformance/python/requirements.txt
  echo "$want" >"$stamp"
fi
echo "-- npm ci (conformance/node)"
(cd conformance/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

passed=0
failed=0
# Adds a suite's `RESULT passed=N failed=M`; a suite that died before printing it fails.
tally() {
  local log=$1 line
  line=$(grep -E '^RESULT passed=[0-9]+ failed=[0-9]+$' "$log" | tail -1 || true)
  if [ -z "$line" ]; then
    echo "   (no RESULT line: the suite did not finish)"
    failed=$((failed + 1))
    return
  fi
  line=${line#RESULT passed=}
  passed=$((passed + ${line%% failed=*}))
  failed=$((failed + ${line##* failed=}))
}

for mode in $modes; do
  out="$work/$mode"
  rm -rf "$out"
  mkdir -p "$out"
  SIM_ADDR=127.0.0.1:0 SIM_LOG=warn "$sim" --out "$out/keys" --mode "$mode" >"$out/sim.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q '^wxpay-sim listening on' "$out/sim.log" && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^wxpay-sim listening on' "$out/sim.log"; then
    echo "wxpay-sim did not start in $mode mode:"
    cat "$out/sim.log"
    failed=$((failed + 1))
    continue
  fi
  echo "== $(head -1 "$out/sim.log")"
  "$venv/bin/python" conformance/python/conformance.py "$out/keys" 2>&1 | tee "$out/python.log" || true
  tally "$out/python.log"
  node conformance/node/conformance.js "$out/keys" 2>&1 | tee "$out/node.log" || true
  tally "$out/node.log"
  node conformance/node/axios-plugin.js "$out/keys" 2>&1 | tee "$out/axios.log" || true
  tally "$out/axios.log"
  kill "${pids[-1]}" 2>/dev/null || true
done

echo
echo "conformance: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
