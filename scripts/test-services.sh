#!/usr/bin/env bash
# Throwaway Redis and PostgreSQL servers on free loopback ports, for the test suites of every
# language (they call this script, so there is one way to start, kill and restart them).
#
#   test-services.sh install                    install redis-server and postgresql (Debian) if absent
#   test-services.sh redis start DIR [PORT [ARGS…]]  start redis-server in DIR (extra redis-server
#                                               ARGS, e.g. --appendonly yes; PORT '' for a free one);
#                                               prints redis://127.0.0.1:PORT
#   test-services.sh redis cluster DIR          a 3-master Redis Cluster; prints redis+cluster://h:p,h:p,h:p
#   test-services.sh redis stop DIR             stop every redis-server started in DIR
#   test-services.sh postgres start DIR [PORT]  initdb (once) and start; prints postgres://postgres@127.0.0.1:PORT/postgres
#                                               (DIR: a directory whose parents the postgres user can traverse, such as a mktemp -d)
#   test-services.sh postgres stop DIR          fast shutdown
#   test-services.sh postgres kill DIR          SIGKILL the postmaster (a crash; restart with start)
#   test-services.sh stop DIR                   stop whatever runs in DIR
#
# Servers bind 127.0.0.1 only. PostgreSQL refuses to run as root: as root it runs as the
# `postgres` user on a data and socket directory that user owns. Every command is bounded in time.
set -euo pipefail

die() { echo "test-services: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] || return 1
  echo "$d"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  local need=()
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v redis-cli >/dev/null || need+=(redis-tools)
  pg_bin >/dev/null || need+=(postgresql)
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them (apt-get install ${need[*]})"
  echo "test-services: installing ${need[*]}" >&2
  local i
  for i in 1 2 3 4 5 6; do
    # Another process may hold the apt lock for a few seconds.
    if { [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq; } \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
      return 0
    fi
    sleep $((i * 2))
  done
  die "could not install ${need[*]}"
}

redis_wait() { # DIR PORT: until the server started in DIR answers on PORT (5 s)
  local dir="$1" port="$2" i pid
  for i in $(seq 1 100); do
    # Our server, not another one that took the port between free_port and the bind (this
    # start then failed): the one answering has the pid our start wrote.
    pid="$(cat "$dir/redis-$port.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

redis_one() { # DIR PORT [extra args…]: start one server, wait until it answers
  local dir="$1" port="$2"
  shift 2
  rm -f "$dir/redis-$port.pid"
  redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --save '' --appendonly no \
    --dir "$dir" --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log" "$@" >/dev/null
  redis_wait "$dir" "$port"
}

redis_start() {
  local dir="$1" port="${2:-}" try
  shift 2 || shift $#
  mkdir -p "$dir"
  if [ -n "$port" ]; then
    redis_one "$dir" "$port" "$@" || die "redis-server did not start on $port (see $dir/redis-$port.log)"
  else
    for try in 1 2 3 4 5; do
      port="$(free_port)"
      if redis_one "$dir" "$port" "$@"; then break; fi
      port=""
    done
    [ -n "$port" ] || die "redis-server did not start (see $dir)"
  fi
  echo "redis://127.0.0.1:$port"
}

redis_cluster() {
  local dir="$1" ports=() p i=0
  mkdir -p "$dir"
  while [ ${#ports[@]} -lt 3 ]; do
    p="$(free_port)"
    # A node also listens on port + 10000 (the cluster bus).
    [ "$p" -lt 55000 ] || continue
    [ $((++i)) -lt 30 ] || die "no free ports for a cluster"
    if redis_one "$dir" "$p" --cluster-enabled yes --cluster-config-file "$dir/nodes-$p.conf" \
      --cluster-node-timeout 2000; then
      ports+=("$p")
    fi
  done
  redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}" \
    --cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log" 2>&1 || die "cluster create failed (see $dir/cluster-create.log)"
  for i in $(seq 1 100); do
    local ok=1
    for p in "${ports[@]}"; do
      redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  echo "redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
}

redis_stop() {
  local dir="$1" f pid
  for f in "$dir"/redis-*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

pg_start() {
  local dir="$1" port="${2:-}" bin data try
  bin="$(pg_bin)" || die "PostgreSQL is not installed (test-services.sh install)"
  data="$dir/pg/data"
  mkdir -p "$dir/pg"
  # The postgres user must reach the directory: open the path for traversal, own the pg dir.
  if [ "$(id -u)" = 0 ]; then
    chmod o+x "$dir"
    chown postgres "$dir/pg"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 >"$dir/pg/initdb.log" 2>&1 \
      || die "initdb failed (see $dir/pg/initdb.log)"
  fi
  if [ -z "$port" ] && [ -f "$dir/pg/port" ]; then port="$(cat "$dir/pg/port")"; fi
  for try in 1 2 3 4 5; do
    [ -n "$port" ] || port="$(free_port)"
    if as_pg "$bin/pg_ctl" -D "$data" -l "$dir/pg/log" -w -t 60 \
      -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=64MB" \
      start >/dev/null 2>&1; then
      echo "$port" >"$dir/pg/port"
      echo "postgres://postgres@127.0.0.1:$port/postgres"
      return 0
    fi
    [ -f "$dir/pg/port" ] && die "PostgreSQL did not restart on $port (see $dir/pg/log)"
    port=""
  done
  die "PostgreSQL did not start (see $dir/pg/log)"
}

pg_stop() {
  local dir="$1" bin
  bin="$(pg_bin)" || return 0
  [ -f "$dir/pg/data/postmaster.pid" ] || return 0
  as_pg "$bin/pg_ctl" -D "$dir/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

pg_kill() {
  local dir="$1" pid kids i
  pid="$(head -n 1 "$dir/pg/data/postmaster.pid" 2>/dev/null || true)"
  [ -n "$pid" ] || die "no PostgreSQL running in $dir"
  # The whole server at once, as a machine crash would: the postmaster and every backend.
  kids="$(ps -o pid= --ppid "$pid" 2>/dev/null | tr '\n' ' ')"
  kill -9 "$pid" $kids 2>/dev/null || true
  for i in $(seq 1 200); do
    local alive=0 p
    for p in $pid $kids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.05
  done
  die "PostgreSQL processes did not exit"
}

cmd="${1:-}"
case "$cmd" in
  install) install ;;
  redis)
    [ $# -ge 3 ] || die "usage: redis start|cluster|stop DIR [PORT]"
    case "$2" in
      start) redis_start "$3" "${4:-}" "${@:5}" ;;
      cluster) redis_cluster "$3" ;;
      stop) redis_stop "$3" ;;
      *) die "unknown redis command $2" ;;
    esac
    ;;
  postgres)
    [ $# -ge 3 ] || die "usage: postgres start|stop|kill DIR [PORT]"
    case "$2" in
      start) pg_start "$3" "${4:-}" ;;
      stop) pg_stop "$3" ;;
      kill) pg_kill "$3" ;;
      *) die "unknown postgres command $2" ;;
    esac
    ;;
  stop)
    [ $# -ge 2 ] || die "usage: stop DIR"
    redis_stop "$2"
    pg_stop "$2"
    ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
