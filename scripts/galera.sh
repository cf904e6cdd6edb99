#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on 127.0.0.1, for the cluster tests and benchmarks
# (issue 21). Everything it makes lives under target/galera/ of this checkout; it never
# reads or touches the machine's own MariaDB (port 3306, /etc/mysql, /var/lib/mysql): each
# node runs from its own defaults file, datadir, socket and pid file.
#
#   scripts/galera.sh start          install the packages if missing, start (or restart) the
#                                    three nodes, wait for them, print TEST_GALERA_URLS
#   scripts/galera.sh stop           stop the nodes this script started (3, 2, then 1)
#   scripts/galera.sh status         each node's state and the cluster's size
#   scripts/galera.sh urls           the three URLs, comma-separated (for TEST_GALERA_URLS)
#   scripts/galera.sh kill-node N    SIGKILL node N (a crash: no shutdown, no goodbye)
#   scripts/galera.sh start-node N   start node N again; it rejoins (IST, or SST with rsync)
#   scripts/galera.sh destroy        stop, then delete target/galera
#
# Ports (node N = 1, 2, 3): SQL 4305+N (4306–4308), Galera replication 14557+10N
# (14567, 14577, 14587), IST one above it, rsync SST two above it. GALERA_WAIT_SECS (90)
# bounds every wait.
set -euo pipefail
cd "$(dirname "$0")/.."

root="$PWD/target/galera"
launched=
nodes=(1 2 3)
wait_secs="${GALERA_WAIT_SECS:-90}"
provider_candidates=(/usr/lib/galera/libgalera_smm.so /usr/lib/galera-4/libgalera_smm.so
  /usr/lib64/galera-4/libgalera_smm.so /usr/lib64/galera/libgalera_smm.so)

sql_port() { echo $((4305 + $1)); }
gcomm_port() { echo $((14557 + 10 * $1)); }
dir() { echo "$root/node$1"; }
cnf() { echo "$(dir "$1")/my.cnf"; }
pidfile() { echo "$(dir "$1")/mariadbd.pid"; }
sock() { echo "$(dir "$1")/mariadbd.sock"; }
url() { echo "mysql://root@127.0.0.1:$(sql_port "$1")/test"; }
urls() { local u=(); for n in "${nodes[@]}"; do u+=("$(url "$n")"); done; (IFS=,; echo "${u[*]}"); }

say() { printf 'galera: %s\n' "$*"; }
die() { printf 'galera: %s\n' "$*" >&2; exit 1; }

check_node_arg() {
  case "${1:-}" in 1 | 2 | 3) ;; *) die "name a node: 1, 2 or 3 (got '${1:-}')" ;; esac
}

install_packages() {
  local missing=()
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
  command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
  find_provider >/dev/null || missing+=(galera-4)
  command -v rsync >/dev/null 2>&1 || missing+=(rsync)
  # wsrep_sst_rsync finds its rsync daemon with ss (or lsof).
  command -v ss >/dev/null 2>&1 || command -v lsof >/dev/null 2>&1 || missing+=(iproute2)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    [ "$(id -u)" = 0 ] || die "need root to install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Installing mariadb-server may start (or restart) the machine's own service; policy-rc.d
    # keeps apt's hands off every service while it runs.
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { [ -n "$created_policy" ] && rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
    [ -n "$created_policy" ] && rm -f "$policy"
  fi
  find_provider >/dev/null || die "galera-4 is installed but libgalera_smm.so was not found"
}

find_provider() {
  local p
  for p in "${provider_candidates[@]}"; do
    if [ -f "$p" ]; then echo "$p"; return 0; fi
  done
  p=$(dpkg -L galera-4 2>/dev/null | grep -m1 '/libgalera_smm\.so$' || true)
  [ -n "$p" ] && [ -f "$p" ] && { echo "$p"; return 0; }
  return 1
}

# The pid of node N's mariadbd, if it runs and is ours: the pid file's process must be a
# mariadbd started with this node's defaults file (a stale pid file could name anything).
node_pid() {
  local f pid
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--defaults-file=$(cnf "$1")" || return 1
  echo "$pid"
}

running() { node_pid "$1" >/dev/null; }

sql() {
  local n=$1
  shift
  mariadb --no-defaults --protocol=socket --socket="$(sock "$n")" -uroot -N -B -e "$*" 2>/dev/null
}

status_var() { sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" | awk '{print $2}'; }

write_cnf() {
  local n=$1 provider=$2 g others=() m
  g=$(gcomm_port "$n")
  for m in "${nodes[@]}"; do others+=("127.0.0.1:$(gcomm_port "$m")"); done
  cat >"$(cnf "$n")" <<EOF
# Written by scripts/galera.sh; node $n of the local test cluster.
[mariadbd]
user = $(run_as)
datadir = $(dir "$n")/data
socket = $(sock "$n")
pid-file = $(pidfile "$n")
log-error = $(dir "$n")/error.log
bind-address = 127.0.0.1
port = $(sql_port "$n")
skip-name-resolve
performance_schema = OFF
innodb_buffer_pool_size = 128M
innodb_log_file_size = 48M
max_connections = 400
# What Galera requires.
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = $provider
wsrep_cluster_name = wxpay_test_cluster
wsrep_cluster_address = gcomm://$(IFS=,; echo "${others[*]}")
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:$g
wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:$g;ist.recv_addr=127.0.0.1:$((g + 1));gcache.size=64M;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.install_timeout=PT5S"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:$((g + 2))
wsrep_slave_threads = 2

[client]
socket = $(sock "$n")
EOF
}

# The user the nodes run as. Not root: as root, the rsync daemon that receives an SST
# drops to `nobody` and cannot write the datadir.
run_as() {
  if [ "$(id -u)" = 0 ]; then echo mysql; else id -un; fi
}

# A fresh datadir for node 1 (the others receive theirs from it by SST).
init_datadir() {
  local n=$1
  mkdir -p "$(dir "$n")/data"
  [ "$(id -u)" != 0 ] || chown -R mysql:mysql "$(dir "$n")"
  [ "$n" = 1 ] || return 0
  [ -d "$(dir "$n")/data/mysql" ] && return 0
  say "node $n: creating its datadir"
  mariadb-install-db --defaults-file="$(cnf "$n")" --auth-root-authentication-method=normal \
    --skip-test-db --wsrep-on=OFF >"$(dir "$n")/install-db.log" 2>&1 ||
    die "mariadb-install-db failed; see $(dir "$n")/install-db.log"
}

# Which node may bootstrap: after a clean stop, the one Galera marked safe_to_bootstrap;
# after all three crashed, the one whose InnoDB holds the highest committed seqno
# (`mariadbd --wsrep-recover` reads it), so no committed transaction is lost.
bootstrap_node() {
  local n best=1 best_seq=-2 seq g
  for n in "${nodes[@]}"; do
    g="$(dir "$n")/data/grastate.dat"
    if [ -f "$g" ] && grep -q '^safe_to_bootstrap: *1' "$g"; then echo "$n"; return; fi
  done
  for n in "${nodes[@]}"; do
    g="$(dir "$n")/data/grastate.dat"
    [ -f "$g" ] || continue
    write_cnf "$n" "$(find_provider)"
    local log="$(dir "$n")/recover.log"
    : >"$log"
    [ "$(id -u)" != 0 ] || chown mysql:mysql "$log"
    /usr/sbin/mariadbd --defaults-file="$(cnf "$n")" --wsrep-recover --log-error="$log" >/dev/null 2>&1 || true
    seq=$(grep -Eo 'Recovered position: [^ ]+' "$log" | tail -1 | awk -F: '{print $NF}')
    if [ -n "$seq" ] && [ "$seq" -gt "$best_seq" ]; then best=$n best_seq=$seq; fi
  done
  g="$(dir "$best")/data/grastate.dat"
  if [ -f "$g" ]; then
    say "no node was stopped cleanly; node $best has the highest recovered seqno ($best_seq)" >&2
    sed -i 's/^safe_to_bootstrap: *0/safe_to_bootstrap: 1/' "$g"
  fi
  echo "$best"
}

launch() {
  local n=$1
  shift
  : >"$(dir "$n")/error.log"
  [ "$(id -u)" != 0 ] || chown mysql:mysql "$(dir "$n")/error.log"
  # setsid: the node outlives this script and gets no signal from its terminal.
  setsid /usr/sbin/mariadbd --defaults-file="$(cnf "$n")" "$@" </dev/null >>"$(dir "$n")/error.log" 2>&1 &
  launched=$!
}

# Waits until node N is Synced and ready; stops with its log's tail on timeout or death.
wait_synced() {
  local n=$1 deadline=$((SECONDS + wait_secs)) state=
  while [ $SECONDS -lt $deadline ]; do
    state=$(status_var "$n" wsrep_local_state_comment || true)
    if [ "$state" = Synced ] && [ "$(status_var "$n" wsrep_ready || true)" = ON ]; then return 0; fi
    if ! kill -0 "$launched" 2>/dev/null; then
      tail -n 30 "$(dir "$n")/error.log" >&2 || true
      die "node $n stopped while starting; its log: $(dir "$n")/error.log"
    fi
    sleep 0.3
  done
  tail -n 30 "$(dir "$n")/error.log" >&2 || true
  die "node $n was not Synced after ${wait_secs}s (state: ${state:-no answer}); its log: $(dir "$n")/error.log"
}

wait_cluster() {
  local deadline=$((SECONDS + wait_secs)) size= n
  while [ $SECONDS -lt $deadline ]; do
    local all=1
    for n in "${nodes[@]}"; do
      size=$(status_var "$n" wsrep_cluster_size || true)
      [ "$size" = 3 ] && [ "$(status_var "$n" wsrep_ready || true)" = ON ] || all=
    done
    [ -n "$all" ] && return 0
    sleep 0.3
  done
  die "the cluster did not reach 3 ready nodes within ${wait_secs}s (last size seen: ${size:-none}); run: $0 status"
}

start_one() {
  local n=$1 provider=$2
  shift 2
  mkdir -p "$(dir "$n")"
  write_cnf "$n" "$provider"
  init_datadir "$n"
  launch "$n" "$@"
  wait_synced "$n"
  say "node $n: Synced on 127.0.0.1:$(sql_port "$n")"
}

cmd_start() {
  local started=$SECONDS n up=() down=()
  # A Unix socket path has room for 107 bytes; mariadbd would fail with a vaguer message.
  [ "${#root}" -le 80 ] || die "the checkout's path is too long for the nodes' sockets ($root): clone it to a shorter path"
  for n in "${nodes[@]}"; do if running "$n"; then up+=("$n"); else down+=("$n"); fi; done
  if [ "${#down[@]}" -eq 0 ]; then
    say "already running (nodes ${up[*]})"
    wait_cluster
    ensure_test_db
    urls
    return
  fi
  install_packages
  local provider
  provider=$(find_provider)
  if [ "${#up[@]}" -eq 0 ]; then
    local first
    first=$(bootstrap_node)
    say "bootstrapping a new cluster from node $first"
    start_one "$first" "$provider" --wsrep-new-cluster
    down=("${down[@]/$first/}")
  fi
  for n in "${down[@]}"; do
    [ -n "$n" ] || continue
    say "node $n: joining"
    start_one "$n" "$provider"
  done
  wait_cluster
  ensure_test_db
  say "cluster of 3 ready in $((SECONDS - started)) s"
  urls
}

# The URLs name `test` (mariadb-install-db made none); tests make their own databases.
ensure_test_db() {
  sql 1 "CREATE DATABASE IF NOT EXISTS test" >/dev/null || die "cannot create database test on node 1"
}

stop_one() {
  local n=$1 pid deadline
  pid=$(node_pid "$n") || { say "node $n: not running"; return 0; }
  kill -TERM "$pid"
  deadline=$((SECONDS + wait_secs))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "node $n: still running ${wait_secs}s after SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  say "node $n: stopped"
}

cmd_stop() {
  local n
  for n in 3 2 1; do stop_one "$n"; done
}

cmd_status() {
  local n pid
  for n in "${nodes[@]}"; do
    if pid=$(node_pid "$n"); then
      printf 'node %s: pid %s, 127.0.0.1:%s, %s, cluster size %s, ready %s\n' "$n" "$pid" \
        "$(sql_port "$n")" "$(status_var "$n" wsrep_local_state_comment || echo '?')" \
        "$(status_var "$n" wsrep_cluster_size || echo '?')" "$(status_var "$n" wsrep_ready || echo '?')"
    else
      printf 'node %s: not running\n' "$n"
    fi
  done
}

cmd_kill_node() {
  check_node_arg "${1:-}"
  local pid
  pid=$(node_pid "$1") || die "node $1 is not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  say "node $1: killed (SIGKILL, pid $pid)"
}

cmd_start_node() {
  check_node_arg "${1:-}"
  local n=$1 m others=0 started=$SECONDS
  if running "$n"; then say "node $n: already running"; return; fi
  for m in "${nodes[@]}"; do running "$m" && others=$((others + 1)); done
  [ "$others" -gt 0 ] || die "no other node runs to join; use: $0 start"
  start_one "$n" "$(find_provider)"
  say "node $n: rejoined in $((SECONDS - started)) s ($(grep -Eo 'IST received|SST (succeeded|complete)[^ ]*' "$(dir "$n")/error.log" | tail -1 || echo 'state transfer'))"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  urls) urls ;;
  kill-node) cmd_kill_node "${2:-}" ;;
  start-node) cmd_start_node "${2:-}" ;;
  destroy) cmd_stop; rm -rf "$root"; say "removed $root" ;;
  *) echo "usage: $0 start|stop|status|urls|kill-node N|start-node N|destroy" >&2; exit 2 ;;
esac
