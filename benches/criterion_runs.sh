#!/usr/bin/env bash
# Runs the criterion bench (benches/pool_sizes.rs) RUNS times and collects each run's
# median time per batch, as throughput, from target/criterion/<load>/workers/<N>/new/.
#
# Usage: benches/criterion_runs.sh [RUNS] [OUT.csv]   (defaults: 3, benches/results/pool_sizes_criterion.csv)
# Extra criterion flags go in CRITERION_ARGS, e.g. CRITERION_ARGS=--quick.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
out=${2:-benches/results/pool_sizes_criterion.csv}
commit=${PARLOR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
crit=${CARGO_TARGET_DIR:-target}/criterion
mkdir -p "$(dirname "$out")"
echo "date,commit,run,load,workers,median_ns_per_batch,elements_per_batch,per_s,loadavg" >"$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for run in $(seq "$runs"); do
  # Each run's estimates replace the last: clear them, so a failed run cannot leave
  # stale ones to be collected.
  rm -rf "$crit"/{echo,fanout,mixed}
  # shellcheck disable=SC2086
  if ! cargo bench --bench pool_sizes -- ${CRITERION_ARGS:-} >"$log" 2>&1; then
    cat "$log" >&2; echo "criterion_runs.sh: run $run failed" >&2; exit 1
  fi
  grep -E '^[a-z]+/workers/|thrpt:' "$log" | grep -v '%' || true
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
  python3 - "$crit" "$run" "$commit" "$loadavg" >>"$out" <<'PY'
import json, sys, datetime, pathlib
crit, run, commit, loadavg = sys.argv[1:]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
for load in ("echo", "fanout", "mixed"):
    for workers in (1, 2, 4, 8):
        d = pathlib.Path(crit, load, "workers", str(workers), "new")
        try:
            est = json.loads((d / "estimates.json").read_text())
            bench = json.loads((d / "benchmark.json").read_text())
        except FileNotFoundError:
            continue
        ns = est["median"]["point_estimate"]
        elements = bench["throughput"]["Elements"]
        print(f"{now},{commit},{run},{load},{workers},{ns:.0f},{elements},{elements / ns * 1e9:.0f},{loadavg}")
PY
done
echo
python3 benches/summarize.py criterion "$out"
