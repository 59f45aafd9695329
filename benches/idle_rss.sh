#!/usr/bin/env bash
# Memory per idle connection: a fresh server's resident set (VmRSS from
# /proc/PID/status) before and after N connections that connect and then send
# nothing, for parlor (chat mode, --in-memory) and, if installed, redis-server.
# Afterwards a sample of the parlor connections must still answer `ping`, so the
# figure is for connections that work.
#
# Usage: benches/idle_rss.sh [N]          (default 10000)
# Env:   PARLOR_PORT (7984), REDIS_PORT (6398).
# Needs python3 (standard library only); the client raises its own open-file limit
# to fit N, so the hard limit (ulimit -Hn) must allow N + 100. Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
pport=${PARLOR_PORT:-7984}
rport=${REDIS_PORT:-6398}

source benches/common.sh
make_work
build_release
for port in "$pport" "$rport"; do
  if port_busy "$port"; then echo "idle_rss.sh: port $port is in use; set PARLOR_PORT/REDIS_PORT" >&2; exit 1; fi
done

measure() { # NAME PORT PING(0|1): the server is $server_pid
  await_port "$1" "$2"
  python3 - "$1" "$2" "$n" "$3" "$server_pid" <<'EOF'
import resource, socket, sys, time
name, port, n, ping, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard != resource.RLIM_INFINITY and hard < n + 100:
    raise SystemExit(f"idle_rss.sh: the open-file hard limit {hard} is below {n + 100}")
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, hard))
time.sleep(0.5)
before = rss_kib()
conns = []
for i in range(n):
    conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
# Let the server accept and register every one before reading its memory.
time.sleep(2.0)
after = rss_kib()
answered = 0
if ping:
    sample = conns[:: max(1, n // 100)]
    for s in sample:
        s.sendall(b'{"id":1,"op":"ping"}\n')
        if b'"pong":true' in s.recv(4096):
            answered += 1
    if answered != len(sample):
        raise SystemExit(f"idle_rss.sh: only {answered} of {len(sample)} sampled connections answered ping")
per = (after - before) * 1024 / n
note = f"; {answered} sampled connections answered ping" if ping else ""
print(f"{name}: {n} idle connections: RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB, {per:,.0f} bytes per connection{note}")
for s in conns:
    s.close()
EOF
  stop_server
}

./target/release/parlor serve --addr "127.0.0.1:$pport" --in-memory --max-conns $((n + 100)) \
  2>"$work/parlor.log" &
server_pid=$!
measure parlor "$pport" 1

if command -v redis-server >/dev/null 2>&1; then
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --maxclients $((n + 100)) >"$work/redis.log" 2>&1 &
  server_pid=$!
  measure redis "$rport" 0
else
  echo "redis-server not found: skipping it (Debian: apt-get install redis-server)"
fi
