#!/usr/bin/env bash
# The MariaDB programs the tests need: the shared server CI starts (`.ci/run`), and the
# private TLS instance `tests/mysql_tls` starts itself (`mariadb-install-db`, `mariadbd`).
# Installs Debian's mariadb-server when either is missing; does nothing otherwise.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

if have mariadbd && have mariadb-install-db; then
  exit 0
fi
echo "installing mariadb-server (mariadbd / mariadb-install-db missing)"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client
