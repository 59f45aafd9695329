#!/usr/bin/env bash
# Heavy soak of the release binary: SOAK_CONNS connections (default 2000) for SOAK_SECS
# seconds (default 60), chat traffic mixed with slow readers, abrupt disconnects, garbage,
# over-long lines and reconnecting clients (examples/soak.rs drives it). Prints the
# driver's figures (connections, messages, faults by kind, lost = N, server RSS before,
# peak and after) and fails if anything was lost or the server's log shows a panic.
# Not part of CI (.ci/run); tests/soak.rs runs the same example for a few seconds.
#
# Usage: benches/soak.sh            (env: SOAK_SECS, SOAK_CONNS, SOAK_RATE, SOAK_PORT,
#                                    SOAK_STORE=memory|disk, default memory)
# SOAK_CHECKS=1 builds the release binary with overflow checks and debug assertions (in
# target/soak-checks, so the usual release build is left alone): an arithmetic slip
# then panics, and shows in the log, instead of wrapping silently.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SOAK_SECS:-60}
conns=${SOAK_CONNS:-2000}
rate=${SOAK_RATE:-200}
port=${SOAK_PORT:-7979}
store=${SOAK_STORE:-memory}

# Both the server and the driver hold one descriptor per connection, and then some.
want=$((conns * 2 + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
  ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$((conns + 64))" ]; then
  echo "soak.sh: ulimit -n is $(ulimit -n), too low for $conns connections" >&2
  exit 1
fi

bin=target/release
if [ "${SOAK_CHECKS:-0}" = 1 ]; then
  export CARGO_TARGET_DIR=target/soak-checks
  export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
  export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
  bin=$CARGO_TARGET_DIR/release
fi
cargo build --release --quiet --bin parlor --example soak
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

case $store in
  memory) storage=(--in-memory) ;;
  disk) storage=(--data-dir "$work/data") ;;
  *) echo "soak.sh: SOAK_STORE must be memory or disk" >&2; exit 1 ;;
esac
log=$work/server.log
# A small outbound queue, so slow readers are cut off after a few seconds, not minutes.
"$bin"/parlor serve --addr 127.0.0.1:"$port" "${storage[@]}" --bcrypt-cost 4 \
  --max-outbound 262144 2>"$log" &
server_pid=$!
for _ in $(seq 100); do
  grep -q listening "$log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
grep -q listening "$log" || { echo "soak.sh: the server did not start" >&2; cat "$log" >&2; exit 1; }
echo "server: $(grep -m1 listening "$log")"

status=0
"$bin"/examples/soak --addr 127.0.0.1:"$port" --conns "$conns" --secs "$secs" \
  --rate "$rate" --server-pid "$server_pid" || status=$?

kill -TERM "$server_pid"
wait "$server_pid" || { echo "soak.sh: the server exited with status $?" >&2; status=1; }
server_pid=
panics=$(grep -c panicked "$log" || true)
echo "server log: $(wc -l <"$log") lines, $panics with \"panicked\""
if [ "$panics" -gt 0 ]; then
  grep -m5 -A3 panicked "$log" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "soak: ok" || echo "soak: FAILED"
exit "$status"
