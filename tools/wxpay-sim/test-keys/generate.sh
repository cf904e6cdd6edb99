#!/usr/bin/env bash
# Regenerates rsa2048-test-keys.pem: the simulator's stored RSA-2048 TEST keys.
#
# These keys are public (they are in this repository). They sign nothing but the
# simulator's own answers and the tests' requests: no WeChat Pay merchant or platform uses
# them, and no money moves with them. They replace generating RSA keys at run time, which
# needed the `rsa` crate (RUSTSEC-2023-0071) and took a noticeable fraction of a second.
#
# The simulator hands them out in turn (keys.rs): the first is the tests' merchant key, the
# second the "foreign" key forged notifications are signed with, the rest go round for
# merchant and platform identities, so keys handed out close together are distinct.
#
# Usage: tools/wxpay-sim/test-keys/generate.sh [COUNT]   (default 24)
set -euo pipefail
cd "$(dirname "$0")"
count="${1:-24}"
out=rsa2048-test-keys.pem
{
  echo "TEST KEYS ONLY - published, they move no money. Made by generate.sh with:"
  echo "  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048   (x$count, PKCS#8)"
  for _ in $(seq 1 "$count"); do
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null
  done
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $count keys to $(pwd)/$out"
