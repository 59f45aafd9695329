#!/usr/bin/env bash
# Server CPU time per echoed message: `parlor serve --echo` against a minimal
# single-threaded epoll echo server in C (benches/epoll_echo.c), driven by the same
# client (examples/multi_client.rs --mode echo), for the target "echo mode: server CPU
# per message within 1.2x of a minimal single-threaded epoll echo server". Loads, both
# with at most 16 messages in flight per connection:
#   50x64      50 connections, 64-byte messages
#   200x1024   200 connections, 1024-byte messages
# Servers: epoll (the C baseline), parlor (the default worker count)
# and parlor_w1 (--workers 1). Server CPU is the process's utime + stime from
# /proc/PID/stat over the load, divided by the messages echoed (multi_client
# --server-pid). A fresh server per run; in odd rounds the order is epoll, parlor,
# parlor_w1, in even rounds the reverse.
#
# Usage: benches/echo_cpu.sh [ROUNDS] [OUT.csv]   (defaults: 3, benches/results/echo_cpu.csv)
# Env:   SMALL_MESSAGES (per connection for 50x64, 10000), LARGE_MESSAGES (per
#        connection for 200x1024, 2500), PORT (7983), PARLOR_COMMIT.
# Needs gcc (it installs nothing) and python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

source benches/common.sh
require gcc "It compiles the baseline, benches/epoll_echo.c." \
  "On Debian or Ubuntu: sudo apt-get install gcc   (or build-essential)"
require python3 "It summarises the results (standard library only)."

rounds=${1:-3}
out=${2:-benches/results/echo_cpu.csv}
port=${PORT:-7983}
small_messages=${SMALL_MESSAGES:-10000}
large_messages=${LARGE_MESSAGES:-2500}
commit=${PARLOR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

make_work
gcc -O2 -Wall -o "$work/epoll_echo" benches/epoll_echo.c
build_release multi_client
if port_busy "$port"; then echo "echo_cpu.sh: port $port is in use; set PORT" >&2; exit 1; fi

start_server() { # epoll|parlor|parlor_w1
  case $1 in
    epoll) "$work/epoll_echo" "$port" 2>"$work/$1.log" & ;;
    parlor) ./target/release/parlor serve --echo --addr "127.0.0.1:$port" --in-memory \
              "${limits[@]}" 2>"$work/$1.log" & ;;
    parlor_w1) ./target/release/parlor serve --echo --addr "127.0.0.1:$port" --in-memory \
              --workers 1 "${limits[@]}" 2>"$work/$1.log" & ;;
  esac
  server_pid=$!
  await_port "$1" "$port"
}

mkdir -p "$(dirname "$out")"
echo "date,commit,round,load,conns,size,server,workers,msgs_per_s,p50_us,p99_us,p999_us,server_cpu_s,server_cpu_ns_per_msg,client_cpu_s,loadavg" >"$out"

run() { # round load server
  local round=$1 load=$2 server=$3 conns size messages
  case $load in
    50x64) conns=50; size=64; messages=$small_messages ;;
    200x1024) conns=200; size=1024; messages=$large_messages ;;
  esac
  start_server "$server"
  local text
  if ! text=$("$mc" --mode echo --addr "127.0.0.1:$port" --conns "$conns" --size "$size" \
      --in-flight 16 --messages "$messages" --server-pid "$server_pid" --max-secs 120 2>&1); then
    echo "$text" >&2; cat "$work/$server.log" >&2
    echo "echo_cpu.sh: $load against $server failed" >&2; exit 1
  fi
  # parlor's worker count, as its start-up line says (empty for epoll: one thread).
  local workers=
  [ "$server" != epoll ] && workers=$(sed -n 's/.*workers: \([0-9]*\).*/\1/p' "$work/$server.log" | head -1)
  stop_server
  local got p50 p99 p999 cpu_s cpu achieved client loadavg
  read_report "$text"
  echo "$(date -u +%FT%TZ),$commit,$round,$load,$conns,$size,$server,$workers,$got,$p50,$p99,$p999,$cpu_s,$cpu,$client,$loadavg" >>"$out"
  printf '%-8s %-9s %8s msg/s  p99 %7s us  %6s ns server cpu per msg  (load %s)\n' \
    "$load" "$server" "$got" "$p99" "$cpu" "$loadavg"
}

for round in $(seq "$rounds"); do
  order="epoll parlor parlor_w1"; [ $((round % 2)) = 0 ] && order="parlor_w1 parlor epoll"
  for load in 50x64 200x1024; do
    for server in $order; do run "$round" "$load" "$server"; done
  done
done
echo
python3 benches/summarize.py echo_cpu "$out"
