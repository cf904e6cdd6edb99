#!/usr/bin/env bash
# Installs libfaketime, with which the chaos campaign (tools/wxpay-chaos) runs one router
# instance with its clock 4 minutes off. Idempotent: does nothing when it is there. Needs
# root (CI runs as root); without it the campaign runs without the skewed clock, and says so.
#
# Usage: scripts/install-faketime.sh
set -euo pipefail

lib=$(ls /usr/lib/*/faketime/libfaketimeMT.so.1 2>/dev/null | head -1 || true)
if [ -n "$lib" ]; then
  echo "faketime: $lib"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-faketime: libfaketime missing and not root; run: sudo $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "faketime: apt-get install libfaketime"
apt-get update -qq
apt-get install -y -qq --no-install-recommends libfaketime >/dev/null
echo "faketime: $(ls /usr/lib/*/faketime/libfaketimeMT.so.1 | head -1)"
