#!/usr/bin/env bash
# The measurements of BENCHMARKS.md (issue 6), in one command:
#   scripts/bench.sh                 everything (release build, micro-benchmarks, Node
#                                    reference install, load + cold start side by side)
#   scripts/bench.sh micro           only the criterion micro-benchmarks
#   scripts/bench.sh load            only the load tool (Rust vs Node)
#   scripts/bench.sh handlers        which handlers each built release binary carries
#   scripts/bench.sh cluster         notifications on one MariaDB and on a three-node Galera
#                                    cluster (scripts/galera.sh), same rounds (issue 21)
# Environment: BENCH_DATABASE_URL (default mysql://root@127.0.0.1:3306/wxpay_bench — dropped
# and recreated by every run), N (1000), C (16), ROUNDS (3: load rounds, medians reported),
# COLD_RUNS (20), BASELINE (an earlier build of wxpay_functions, measured in the same rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
target="${CARGO_TARGET_DIR:-target}"
db_url="${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/wxpay_bench}"
n="${N:-1000}"
c="${C:-16}"
cold_runs="${COLD_RUNS:-20}"
rounds="${ROUNDS:-3}"
bins=(wxpay_functions wxpay_order wxpay_callback wxpay_query wxpay_refund)

echo "== machine"
echo "cpus: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "rustc: $(rustc --version); node: $(node --version 2>/dev/null || echo missing)"

micro() {
  echo "== micro-benchmarks (criterion; ~1 minute once built)"
  cargo bench -p wxpay-shared --bench cpu_paths
  echo "== micro-benchmark ratios (medians)"
  python3 - "$target/criterion" <<'PY'
import json, os, sys
root = sys.argv[1]
def median_ns(group, name):
    with open(os.path.join(root, group, name, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"]
sign = median_ns("floor", "rsa2048_sign")
verify = median_ns("floor", "rsa2048_verify")
rows = [
    ("floor/rsa2048_sign", sign, None),
    ("floor/rsa2048_verify", verify, None),
    ("signing/authorization_header", median_ns("signing", "authorization_header"), None),
    ("signing/jsapi_pay_sign", median_ns("signing", "jsapi_pay_sign"), None),
    ("certificates/parse_pem", median_ns("certificates", "parse_pem"), None),
    ("startup/config_from_vars", median_ns("startup", "config_from_vars"), None),
    ("notification/cpu_path", median_ns("notification", "cpu_path"), ("1 verify", verify, 2.0)),
    ("order/cpu_path", median_ns("order", "cpu_path"), ("2 signs", 2 * sign, 1.25)),
]
for name, ns, target in rows:
    line = f"  {name:<30} {ns / 1000:>10.1f} µs"
    if target:
        what, base, limit = target
        ratio = ns / base
        line += f"   = {ratio:.2f} × {what} (target ≤ {limit}×: {'met' if ratio <= limit else 'MISSED'})"
    print(line)
PY
}

load() {
  echo "== Node.js reference: npm ci"
  (cd bench/node-reference && npm ci --no-audit --no-fund --loglevel=error)
  echo "== load and cold starts, Rust router vs Node.js reference"
  baseline=()
  if [ -n "${BASELINE:-}" ]; then baseline=(--baseline "$BASELINE"); fi
  "$target/release/wxpay-load" --bin "$target/release/wxpay_functions" "${baseline[@]}" \
    --node bench/node-reference --database-url "$db_url" \
    --requests "$n" --concurrency "$c" --rounds "$rounds" --cold-runs "$cold_runs"
}

build() {
  echo "== release build (fat LTO: several minutes the first time)"
  pkgs=()
  for b in "${bins[@]}"; do pkgs+=(-p "$b"); done
  # Two builds: built together, cargo would unify wxpay-load's features of tokio, hyper and
  # reqwest into the function binaries, which would then not be the ones deployed.
  cargo build --release "${pkgs[@]}"
  cargo build --release -p wxpay-load
  echo "== binary sizes (stripped by the release profile; target ≤ 12 MB each)"
  for b in "${bins[@]}"; do
    size=$(stat -c %s "$target/release/$b")
    verdict=$([ "$size" -le 12000000 ] && echo met || echo MISSED)
    awk -v b="$b" -v s="$size" -v v="$verdict" 'BEGIN { printf "  %-16s %6.2f MB  %s\n", b, s / 1e6, v }'
  done
  handlers
}

# Which handlers each binary carries, by a message only that handler's code holds (the
# binaries are stripped, so strings are what is left to look at).
handlers() {
  echo "== handlers carried (a binary holds only what its table of handlers reaches)"
  local markers=(
    "order:field \`tradeType\` must be JSAPI"
    "query/close:querying an order needs the payer's openid"
    "refund:give \`outTradeNo\` or \`transactionId\` of the order to refund"
    "notification:could not record the notification; retry later"
    "outbox:/api/payment/internal/notify"
  )
  for b in "${bins[@]}"; do
    carried=()
    for m in "${markers[@]}"; do
      if grep -qaF -- "${m#*:}" "$target/release/$b"; then carried+=("${m%%:*}"); fi
    done
    printf "  %-16s %s\n" "$b" "${carried[*]:-(none)}"
  done
}

# One server and the three-node cluster in the same rounds: the router once against the
# shared MariaDB, then three routers, one per node (BENCHMARKS.md, issue 21).
cluster() {
  echo "== a three-node Galera cluster (scripts/galera.sh)"
  scripts/galera.sh start
  local nodes
  nodes=$(scripts/galera.sh urls | sed 's#/test#/wxpay_bench_cluster#g')
  echo "== load: one server vs the cluster"
  "$target/release/wxpay-load" --bin "$target/release/wxpay_functions" \
    --database-url "${db_url%/*}/wxpay_bench_single" --cluster-urls "$nodes" \
    --phases orders,notifications --requests "$n" --concurrency "$c" --rounds "$rounds"
}

case "$what" in
  all) build; micro; load ;;
  cluster) build; cluster ;;
  micro) micro ;;
  load) build; load ;;
  handlers) handlers ;;
  *) echo "usage: $0 [all|micro|load|handlers|cluster]" >&2; exit 2 ;;
esac
