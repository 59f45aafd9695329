# Shared by the bench scripts that run servers (pool_sizes.sh, vs_redis.sh,
# sync_modes.sh, echo_cpu.sh, syscalls.sh, idle_rss.sh), so that they build, start, wait
# for and clean up after their servers the same way. Sourced from the repository root
# after `set -euo pipefail`; it only defines names, and runs nothing until a script
# calls it.

# Exits 2 if TOOL is not on the PATH, with the lines given after it saying what it is
# for and how to get it: the scripts install nothing.
require() { # tool, then explanation lines
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "$(basename "$0"): $1 not found." >&2
  shift
  printf '  %s\n' "$@" >&2
  exit 2
}

# Builds the release server and the given examples, and sets `limits` to the serve
# flags for a throughput measurement.
build_release() { # example...
  local examples=() example
  for example in "$@"; do examples+=(--example "$example"); done
  cargo build --release --quiet --bin parlor "${examples[@]}"
  # The per-connection frame-rate limit (default 1000 frames/s) would answer the load's
  # senders `rate_limited`: this measures throughput, so it is off.
  limits=(--max-frame-rate 0)
}

mc=./target/release/examples/multi_client

# Makes the scratch directory `work` (the servers' logs, sync_modes.sh's data) and
# arranges that on exit, however the script ends, the running server is stopped (an
# interrupted run must not leave one holding the port) and `work` is removed.
make_work() {
  work=$(mktemp -d)
  server_pid=
  trap cleanup EXIT
}
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until the server just started, NAME (log in $work/NAME.log), listens on PORT;
# the figures of a run against a server still starting would be meaningless.
await_port() { # name port
  for _ in $(seq 100); do port_busy "$2" && return 0; sleep 0.05; done
  echo "$(basename "$0"): $1 did not start; its log:" >&2; cat "$work/$1.log" >&2; exit 1
}

# Starts `parlor serve` on 127.0.0.1:PORT with `limits` and the given flags, in the
# background (pid in server_pid), and waits until it listens.
start_parlor() { # port, then serve flags
  local port=$1; shift
  ./target/release/parlor serve --addr "127.0.0.1:$port" --bcrypt-cost 4 "${limits[@]}" "$@" \
    2>"$work/parlor.log" &
  server_pid=$!
  await_port parlor "$port"
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}

# Sets, from multi_client's report TEXT, what the scripts write to their CSVs: got
# (received/s), p50, p99, p999 (latency us), cpu_s (server cpu s), cpu (server ns per
# message or delivery),
# achieved (a paced publisher's msg/s, empty if unpaced), client (multi_client's own
# cpu s) and loadavg (1 min, now). Callers declare these `local`.
read_report() { # text
  got=$(sed -n 's/.*sent\/s, \([0-9]*\) received\/s.*/\1/p' <<<"$1")
  p50=$(sed -n 's/.*latency us: p50=\([0-9]*\).*/\1/p' <<<"$1")
  p99=$(sed -n 's/.* p99=\([0-9]*\) p999.*/\1/p' <<<"$1")
  p999=$(sed -n 's/.* p999=\([0-9]*\) max.*/\1/p' <<<"$1")
  cpu_s=$(sed -n 's/.*server cpu \([0-9.]*\) s, .*/\1/p' <<<"$1")
  cpu=$(sed -n 's/.*server cpu [0-9.]* s, \([0-9]*\) ns per.*/\1/p' <<<"$1")
  achieved=$(sed -n 's/.*achieved=\([0-9]*\)\/s.*/\1/p' <<<"$1")
  client=$(sed -n 's/.*client cpu \([0-9.]*\) s.*/\1/p' <<<"$1")
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
}
