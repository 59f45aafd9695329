#!/usr/bin/env bash
# The loads of benches/pool_sizes.rs, driven by examples/multi_client.rs against a
# `parlor serve` process with --workers 1, 2, 4 and 8 (a fresh server per run), for
# latency percentiles and the server's CPU time per message or delivery:
#   echo    --echo server, 64 connections, 64-byte messages, 16 in flight each
#   fanout  one sender, 100 listening members of its room, 128-byte texts, 16 in flight
#   mixed   200 clients in 10 rooms, all sending 128-byte texts, 4 in flight each
# The pool sizes alternate within each round (the order rotates every round).
#
# Usage: benches/pool_sizes.sh [ROUNDS] [OUT.csv]   (defaults: 3, benches/results/pool_sizes_mc.csv)
# Env:   ECHO_MESSAGES (5000 per connection), FANOUT_MESSAGES (20000),
#        MIXED_MESSAGES (200 per client), PORT (7982), PARLOR_COMMIT.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
out=${2:-benches/results/pool_sizes_mc.csv}
port=${PORT:-7982}
commit=${PARLOR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
pools=(1 2 4 8)

source benches/common.sh
build_release multi_client
make_work
if port_busy "$port"; then echo "pool_sizes.sh: port $port is in use; set PORT" >&2; exit 1; fi

mkdir -p "$(dirname "$out")"
echo "date,commit,round,load,workers,per_s,p50_us,p99_us,p999_us,server_cpu_ns,client_cpu_s,loadavg" >"$out"

run() { # round load workers
  local round=$1 load=$2 workers=$3 flags=() args=()
  case $load in
    echo) flags=(--echo); args=(--mode echo -n 64 -s 64 -d 16 -m "${ECHO_MESSAGES:-5000}") ;;
    fanout) args=(--mode fanout -n 100 -s 128 -d 16 -m "${FANOUT_MESSAGES:-20000}") ;;
    mixed) args=(--mode chat -n 200 -k 10 -s 128 -d 4 -m "${MIXED_MESSAGES:-200}") ;;
  esac
  start_parlor "$port" --in-memory --workers "$workers" "${flags[@]}"
  local text
  if ! text=$("$mc" --addr "127.0.0.1:$port" "${args[@]}" --server-pid "$server_pid" --max-secs 120 2>&1); then
    echo "$text" >&2; cat "$work/parlor.log" >&2
    echo "pool_sizes.sh: $load with $workers workers failed" >&2; exit 1
  fi
  stop_server
  local client got p50 p99 p999 cpu_s cpu achieved loadavg
  read_report "$text"
  echo "$(date -u +%FT%TZ),$commit,$round,$load,$workers,$got,$p50,$p99,$p999,$cpu,$client,$loadavg" >>"$out"
  printf '%-6s workers=%s %8s/s  p50 %7s us  p99 %8s us  %5s ns server cpu each  (load %s)\n' \
    "$load" "$workers" "$got" "$p50" "$p99" "$cpu" "$loadavg"
}

for round in $(seq "$rounds"); do
  shift_by=$(( (round - 1) % ${#pools[@]} ))
  order=("${pools[@]:$shift_by}" "${pools[@]:0:$shift_by}")
  for load in echo fanout mixed; do
    for workers in "${order[@]}"; do run "$round" "$load" "$workers"; done
  done
done
echo
python3 benches/summarize.py pool_sizes_mc "$out"
