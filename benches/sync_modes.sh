#!/usr/bin/env bash
# Sends/s of one sender to a room of 100 (128-byte texts) with --in-memory, --sync normal
# and --sync full, side by side: the modes alternate, ROUNDS times each, on this machine.
# Usage: benches/sync_modes.sh [ROUNDS] [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
messages=${2:-5000}
source benches/common.sh
build_release multi_client
make_work
port=7979

run() { # mode-name, then serve flags
  local name=$1; shift
  start_parlor "$port" "$@"
  local line
  line=$("$mc" --addr 127.0.0.1:$port --mode chat \
    -n 100 -k 1 --senders 1 -m "$messages" -s 128 -d 32 --max-secs 120 | grep 'sent/s')
  stop_server
  echo "$name: $line"
}

for round in $(seq "$rounds"); do
  run in-memory --in-memory
  rm -rf "$work/normal" "$work/full"
  run sync-normal --data-dir "$work/normal" --sync normal
  run sync-full --data-dir "$work/full" --sync full
done
