#!/usr/bin/env bash
# parlor against redis-server pub/sub on this machine, same load, same client code
# (examples/multi_client.rs, modes fanout and redis): K subscribers on one room or
# channel, one publisher, 128-byte payloads, K = 100 and 1000. Loads for each K:
#   max        as fast as the publisher goes with $DEPTH sends/PUBLISHes unanswered;
#   rate500k   the publisher paced to 500 000 deliveries/s (500000/K messages/s), and
#              likewise for every other rate in $RATES.
# Reports deliveries/s, send-to-delivery latency (p50/p99/p999), the server's CPU time
# per delivery (utime+stime from /proc/PID/stat over the load only), and parlor/redis.
# Each run gets a fresh server; parlor and redis alternate (which goes first flips
# every round), ROUNDS times each.
#
# Usage: benches/vs_redis.sh [ROUNDS] [OUT.csv]     (defaults: 3, benches/results/vs_redis.csv)
# Env:   RATES (deliveries/s, "500000"), MESSAGES_MAX_100 (20000), MESSAGES_MAX_1000 (2000),
#        RATE_SECS (3: how long a paced run lasts), DEPTH (16),
#        RATE_DEPTH (64), READERS (1), PARLOR_PORT (7981), REDIS_PORT (6399),
#        PARLOR_COMMIT (default: git rev-parse --short HEAD).
# Needs redis-server (it installs nothing) and python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

source benches/common.sh
require redis-server "It is needed for the comparison." \
  "On Debian or Ubuntu: sudo apt-get install redis-server" \
  "(only the binary is used: this script starts its own server on 127.0.0.1)"
require python3 "It summarises the results (standard library only)."

rounds=${1:-3}
out=${2:-benches/results/vs_redis.csv}
depth=${DEPTH:-16}
rate_depth=${RATE_DEPTH:-64}
readers=${READERS:-1}
rate_secs=${RATE_SECS:-3}
pport=${PARLOR_PORT:-7981}
rport=${REDIS_PORT:-6399}
rates=${RATES:-500000}
commit=${PARLOR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

build_release multi_client
make_work

for port in "$pport" "$rport"; do
  if port_busy "$port"; then echo "vs_redis.sh: port $port is in use; set PARLOR_PORT/REDIS_PORT" >&2; exit 1; fi
done

start_server() { # parlor|redis
  case $1 in
    parlor) start_parlor "$pport" --in-memory ;;
    redis) redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
             --dir "$work" >"$work/redis.log" 2>&1 &
           server_pid=$!
           await_port redis "$rport" ;;
  esac
}

mkdir -p "$(dirname "$out")"
echo "date,commit,round,server,subscribers,load,deliveries_per_s,p50_us,p99_us,p999_us,server_cpu_ns_per_delivery,target_msgs_per_s,achieved_msgs_per_s,client_cpu_s,loadavg" >"$out"

run() { # round server K load
  local round=$1 server=$2 k=$3 load=$4 mode=fanout port=$pport args
  [ "$server" = redis ] && { mode=redis; port=$rport; }
  local rate=
  if [ "$load" = max ]; then
    local m=${MESSAGES_MAX_100:-20000}; [ "$k" = 1000 ] && m=${MESSAGES_MAX_1000:-2000}
    args=(-m "$m" -d "$depth")
  else
    local per_s=${load#rate}
    rate=$((${per_s%k} * 1000 / k))
    args=(-m $((rate * rate_secs)) -d "$rate_depth" --rate "$rate")
  fi
  start_server "$server"
  local text
  if ! text=$("$mc" --addr "127.0.0.1:$port" --mode "$mode" -n "$k" -s 128 --readers "$readers" \
      "${args[@]}" --server-pid "$server_pid" --max-secs 120 2>&1); then
    echo "$text" >&2; echo "vs_redis.sh: $server K=$k $load failed" >&2; exit 1
  fi
  stop_server
  local client got p50 p99 p999 cpu_s cpu achieved loadavg
  read_report "$text"
  echo "$(date -u +%FT%TZ),$commit,$round,$server,$k,$load,$got,$p50,$p99,$p999,$cpu,$rate,$achieved,$client,$loadavg" >>"$out"
  printf '%-6s K=%-4s %-4s %8s deliveries/s  p99 %8s us  %5s ns cpu/delivery%s  (load %s)\n' \
    "$server" "$k" "$load" "$got" "$p99" "$cpu" "${achieved:+  rate $achieved/$rate msg/s}" "$loadavg"
}

for round in $(seq "$rounds"); do
  order="parlor redis"; [ $((round % 2)) = 0 ] && order="redis parlor"
  for k in 100 1000; do
    for load in max $(for r in $rates; do echo "rate$((r / 1000))k"; done); do
      for server in $order; do run "$round" "$server" "$k" "$load"; done
    done
  done
done
echo
python3 benches/summarize.py vs_redis "$out"
