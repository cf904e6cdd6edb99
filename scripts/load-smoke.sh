#!/usr/bin/env bash
# CI smoke run of the load tool (issue 6): a handful of orders, notifications and cold starts
# of the debug router on a temporary SQLite file, and Lambda cold starts of the debug
# wxpay_order, wxpay_callback and router. It checks that the tool and the measured
# path work — wxpay-load exits non-zero on any failed request, missing backend delivery or
# process that will not start — and never judges speed, so it cannot make CI flaky.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

cargo build --quiet -p wxpay_functions -p wxpay_order -p wxpay_callback -p wxpay-load
# Bounded: a wedged run fails CI instead of hanging it.
timeout 120 "$target/debug/wxpay-load" \
  --bin "$target/debug/wxpay_functions" \
  --requests 5 --concurrency 2 --cold-runs 2
