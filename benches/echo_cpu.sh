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

if ! command -v gcc >/dev/null 2>&1; then
  echo "echo_cpu.sh: gcc not found; it compiles the baseline, benches/epoll_echo.c." >&2
  echo "  On Debian or Ubuntu: sudo apt-get install gcc   (or build-essential)" >&2
  exit 2
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "echo_cpu.sh: python3 not found (used to summarise the results)" >&2
  exit 2
fi

rounds=${1:-3}
out=${2:-benches/results/echo_cpu.csv}
port=${PORT:-7983}
small_messages=${SMALL_MESSAGES:-10000}
large_messages=${LARGE_MESSAGES:-2500}
commit=${PARLOR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -Wall -o "$work/epoll_echo" benches/epoll_echo.c
cargo build --release --quiet --bin parlor --example multi_client
# Echo mode has no frames, but pass --max-frame-rate 0 where it exists, as the other
# bench scripts do, so that no limit can touch a throughput run.
limits=()
if ./target/release/parlor serve --help 2>&1 | grep -q -- --max-frame-rate; then
  limits=(--max-frame-rate 0)
fi
mc=./target/release/examples/multi_client
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_busy "$port"; then echo "echo_cpu.sh: port $port is in use; set PORT" >&2; exit 1; fi

start_server() { # epoll|parlor|parlor_w1
  case $1 in
    epoll) "$work/epoll_echo" "$port" 2>"$work/server.log" & ;;
    parlor) ./target/release/parlor serve --echo --addr "127.0.0.1:$port" --in-memory \
              "${limits[@]}" 2>"$work/server.log" & ;;
    parlor_w1) ./target/release/parlor serve --echo --addr "127.0.0.1:$port" --in-memory \
              --workers 1 "${limits[@]}" 2>"$work/server.log" & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do port_busy "$port" && return 0; sleep 0.05; done
  echo "echo_cpu.sh: $1 did not start; its log:" >&2; cat "$work/server.log" >&2; exit 1
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
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
    echo "$text" >&2; cat "$work/server.log" >&2
    echo "echo_cpu.sh: $load against $server failed" >&2; exit 1
  fi
  # parlor's worker count, as its start-up line says (empty for epoll: one thread).
  local workers=
  [ "$server" != epoll ] && workers=$(sed -n 's/.*workers: \([0-9]*\).*/\1/p' "$work/server.log" | head -1)
  stop_server
  local got p50 p99 p999 cpu_s cpu client loadavg
  got=$(sed -n 's/.*sent\/s, \([0-9]*\) received\/s.*/\1/p' <<<"$text")
  p50=$(sed -n 's/.*latency us: p50=\([0-9]*\).*/\1/p' <<<"$text")
  p99=$(sed -n 's/.* p99=\([0-9]*\) p999.*/\1/p' <<<"$text")
  p999=$(sed -n 's/.* p999=\([0-9]*\) max.*/\1/p' <<<"$text")
  cpu_s=$(sed -n 's/.*server cpu \([0-9.]*\) s, .*/\1/p' <<<"$text")
  cpu=$(sed -n 's/.*server cpu [0-9.]* s, \([0-9]*\) ns per.*/\1/p' <<<"$text")
  client=$(sed -n 's/.*client cpu \([0-9.]*\) s.*/\1/p' <<<"$text")
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
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
