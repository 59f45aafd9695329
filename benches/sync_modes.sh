#!/usr/bin/env bash
# Sends/s of one sender to a room of 100 (128-byte texts) with --in-memory, --sync normal
# and --sync full, side by side: the modes alternate, ROUNDS times each, on this machine.
# Usage: benches/sync_modes.sh [ROUNDS] [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
messages=${2:-5000}
cargo build --release --quiet --bin parlor --example multi_client
# The per-connection frame-rate limit (default 1000 frames/s) would answer the sender
# `rate_limited`: this measures throughput, so it is off where it exists.
limits=()
if ./target/release/parlor serve --help 2>&1 | grep -q -- --max-frame-rate; then
  limits=(--max-frame-rate 0)
fi
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
port=7979

run() { # mode-name, then serve flags
  local name=$1; shift
  ./target/release/parlor serve --addr 127.0.0.1:$port --bcrypt-cost 4 "${limits[@]}" "$@" 2>/dev/null &
  local pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  local line
  line=$(./target/release/examples/multi_client --addr 127.0.0.1:$port --mode chat \
    -n 100 -k 1 --senders 1 -m "$messages" -s 128 -d 32 --max-secs 120 | grep 'sent/s')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name: $line"
}

for round in $(seq "$rounds"); do
  run in-memory --in-memory
  rm -rf "$data/normal" "$data/full"
  run sync-normal --data-dir "$data/normal" --sync normal
  run sync-full --data-dir "$data/full" --sync full
done
