#!/usr/bin/env bash
# Counts the system calls a server makes per message or delivery under one load, with
# `perf stat` on syscall tracepoints. Counts, unlike times, hardly move with the load
# on this noisy 2-core machine, so they show what a change to the write or read path
# did. Loads (examples/multi_client.rs, the same as benches/vs_redis.sh and
# benches/pool_sizes.sh):
#   fanout K M   parlor: 1 publisher, K room members, M messages of 128 B, 16 in flight
#   redis  K M   redis-server pub/sub, the same load
#   echo   N M   parlor --echo: N connections x M messages of 64 B, 16 in flight
#   epoll  N M   benches/epoll_echo.c (the minimal C echo server), the same load
# The load's set-up (sign-ups, joins, subscribes) runs before counting starts.
#
# Usage: benches/syscalls.sh fanout|redis|echo|epoll N M [-- extra `parlor serve` flags]
# Env:   PORT (7983), SIZE (128 for fanout/redis, 64 for echo).
# Needs perf (Debian: apt-get install linux-perf) allowed to read tracepoints (root,
# or kernel.perf_event_paranoid <= -1); redis-server for the redis load. Installs
# nothing; gcc for the epoll load.
set -euo pipefail
cd "$(dirname "$0")/.."

load=${1:?usage: benches/syscalls.sh fanout|redis|echo|epoll N M [-- serve flags]}
n=${2:?N}
m=${3:?M}
shift 3
[ "${1:-}" = "--" ] && shift
port=${PORT:-7983}
source benches/common.sh
require perf "It counts the system calls." "On Debian or Ubuntu: sudo apt-get install linux-perf"
require python3 "It sums the counts (standard library only)."
make_work
build_release multi_client
if port_busy "$port"; then echo "syscalls.sh: port $port is in use; set PORT" >&2; exit 1; fi

case $load in
  fanout)
    ./target/release/parlor serve --addr "127.0.0.1:$port" --in-memory --bcrypt-cost 4 \
      "${limits[@]}" "$@" 2>"$work/$load.log" &
    mode=fanout size=${SIZE:-128} per=delivery count=$((n * m)) ;;
  redis)
    require redis-server "It is the server of this load." \
      "On Debian or Ubuntu: sudo apt-get install redis-server"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
      >"$work/$load.log" 2>&1 &
    mode=redis size=${SIZE:-128} per=delivery count=$((n * m)) ;;
  echo)
    ./target/release/parlor serve --echo --addr "127.0.0.1:$port" "$@" 2>"$work/$load.log" &
    mode=echo size=${SIZE:-64} per=message count=$((n * m)) ;;
  epoll)
    gcc -O2 -o "$work/epoll_echo" benches/epoll_echo.c
    "$work/epoll_echo" "$port" 2>"$work/$load.log" &
    mode=echo size=${SIZE:-64} per=message count=$((n * m)) ;;
  *) echo "syscalls.sh: unknown load '$load': fanout, redis, echo or epoll" >&2; exit 2 ;;
esac
server_pid=$!
await_port "$load" "$port"

events=writev,write,recvfrom,read,epoll_ctl,epoll_wait,epoll_pwait,timerfd_settime,futex,sched_yield
tracepoints=$(echo "$events" | tr ',' '\n' | sed 's/^/syscalls:sys_enter_/' | paste -sd, -)
# Every multi_client run signs up fresh users and joins (or subscribes) before it
# sends, and `joined` events make that set-up cost K(K+1)/2 deliveries of its own: a
# run that sends nothing is counted too, and subtracted.
count_run() { # MESSAGES: prints "event count" lines
  perf stat -x, -e "$tracepoints" -p "$server_pid" -o "$work/stat" &
  local perf_pid=$!
  sleep 0.3
  "$mc" --mode "$mode" --addr "127.0.0.1:$port" -n "$n" -m "$1" -s "$size" -d 16 \
    --max-secs 300 >"$work/mc.out" 2>&1 || { cat "$work/mc.out" >&2; exit 1; }
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  awk -F, '/syscalls:sys_enter_/ { sub("syscalls:sys_enter_", "", $3); print $3, $1 }' "$work/stat"
}
count_run 0 >"$work/setup"
count_run "$m" >"$work/load"
tail -1 "$work/mc.out"
python3 - "$work/setup" "$work/load" "$count" "$per" "$load" <<'EOF'
import sys
def read(path):
    return {name: int(value) for name, value in (line.split() for line in open(path)) if value.isdigit()}
setup, load, count, per, name = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
total = 0
print(f"{name}: system calls per {per}, over {count} of them (set-up subtracted)")
for event, value in load.items():
    calls = value - setup.get(event, 0)
    total += max(calls, 0)
    if calls > 0:
        print(f"  {event:12} {calls:>10}  {calls / count:8.4f}")
print(f"  {'all':12} {total:>10}  {total / count:8.4f}")
EOF
