#!/usr/bin/env python3
"""Summarises the CSV files the bench scripts write, as Markdown tables.

    python3 benches/summarize.py pool_sizes_mc benches/results/pool_sizes_mc.csv
    python3 benches/summarize.py criterion     benches/results/pool_sizes_criterion.csv
    python3 benches/summarize.py vs_redis      benches/results/vs_redis.csv
    python3 benches/summarize.py echo_cpu      benches/results/echo_cpu.csv

Every figure is the median of the runs, with the range (min-max) across runs and the
spread, (max - min) / median. Ratios are the median of the per-round ratios.
Standard library only.
"""

import csv
import statistics
import sys
from collections import defaultdict

POOLS = (1, 2, 4, 8)
LOADS = ("echo", "fanout", "mixed")
UNITS = {"echo": "round trips/s", "fanout": "deliveries/s", "mixed": "deliveries/s"}


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(text):
    return float(text) if text not in ("", None) else None


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values), len(values)


def human(v):
    if v >= 10_000:
        return f"{v / 1000:,.0f}k"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def cell(values, unit=""):
    s = stats(values)
    if s is None:
        return "-"
    med, lo, hi, _ = s
    spread = (hi - lo) / med * 100 if med else 0
    return f"{human(med)}{unit} ({human(lo)}-{human(hi)}, ±{spread / 2:.0f}%)"


def loadavg_note(rows):
    loads = [num(r["loadavg"]) for r in rows if r.get("loadavg")]
    if not loads:
        return ""
    return (
        f"Load average (1 min) during the runs: median {statistics.median(loads):.1f}, "
        f"{min(loads):.1f}-{max(loads):.1f}, on {len(set(r['commit'] for r in rows))} "
        f"commit(s) {', '.join(sorted(set(r['commit'] for r in rows)))}; "
        f"{rows[0]['date']} to {rows[-1]['date']}."
    )


def ratios_to_one_worker(rows, key, title):
    """Throughput with N workers over throughput with 1, within each run (or round):
    conditions drift less within a run than across runs."""
    print(f"\n{title}: throughput relative to 1 worker, per {key} (median, min-max):\n")
    print("| load | " + " | ".join(f"{w} workers" for w in POOLS[1:]) + " |")
    print("|---|" + "---:|" * (len(POOLS) - 1))
    for load in LOADS:
        by_run = defaultdict(dict)
        for r in rows:
            if r["load"] == load and r["per_s"]:
                by_run[r[key]][int(r["workers"])] = float(r["per_s"])
        cells = []
        for w in POOLS[1:]:
            ratios = [v[w] / v[1] for v in by_run.values() if w in v and v.get(1)]
            s = stats(ratios)
            cells.append(f"{s[0]:.2f} ({s[1]:.2f}-{s[2]:.2f})" if s else "-")
        print(f"| {load} | " + " | ".join(cells) + " |")


def pool_sizes_mc(rows):
    print("multi_client against `parlor serve --workers N` (median, range, ± half the spread):\n")
    print("| load | workers | throughput | p50 latency us | p99 latency us | server CPU ns each |")
    print("|---|---:|---:|---:|---:|---:|")
    for load in LOADS:
        for w in POOLS:
            sel = [r for r in rows if r["load"] == load and int(r["workers"]) == w]
            if not sel:
                continue
            print(
                f"| {load} | {w} | {cell([num(r['per_s']) for r in sel])} "
                f"| {cell([num(r['p50_us']) for r in sel])} "
                f"| {cell([num(r['p99_us']) for r in sel])} "
                f"| {cell([num(r['server_cpu_ns']) for r in sel])} |"
            )
    print(f"\nUnits: {', '.join(f'{k}: {v}' for k, v in UNITS.items())}. "
          f"Runs per cell: {max(len([r for r in rows if r['load'] == l and int(r['workers']) == w]) for l in LOADS for w in POOLS)}.")
    print(loadavg_note(rows))
    ratios_to_one_worker(rows, "round", "multi_client")


def criterion(rows):
    print("criterion, benches/pool_sizes.rs (median of the runs' median batch times, as throughput):\n")
    print("| load | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in POOLS) + " |")
    print("|---|" + "---:|" * len(POOLS))
    for load in LOADS:
        cells = []
        for w in POOLS:
            sel = [num(r["per_s"]) for r in rows if r["load"] == load and int(r["workers"]) == w]
            cells.append(cell(sel))
        print(f"| {load} ({UNITS[load]}) | " + " | ".join(cells) + " |")
    print(f"\nRuns: {len(set(r['run'] for r in rows))}.")
    print(loadavg_note(rows))
    ratios_to_one_worker(rows, "run", "criterion")


def load_order(load):
    """max first, then the paced loads by rate (rate500k: 500 000 deliveries/s)."""
    if load == "max":
        return (0, 0)
    digits = "".join(c for c in load if c.isdigit())
    return (1, int(digits) if digits else 0)


def vs_redis(rows):
    by = defaultdict(list)
    for r in rows:
        by[(int(r["subscribers"]), r["load"], r["server"])].append(r)
    metrics = (
        ("deliveries_per_s", "deliveries/s"),
        ("p99_us", "p99 us"),
        ("server_cpu_ns_per_delivery", "server CPU ns/delivery"),
    )
    print("parlor vs redis-server pub/sub (median, range, ± half the spread; ratio = median of per-round parlor/redis):\n")
    print("| K | load | metric | parlor | redis | parlor/redis |")
    print("|---:|---|---|---:|---:|---:|")
    loads = sorted({key[1] for key in by}, key=load_order)
    for k in sorted({key[0] for key in by}):
        for load in loads:
            p, r = by.get((k, load, "parlor"), []), by.get((k, load, "redis"), [])
            if not p and not r:
                continue
            for field, label in metrics + (("p50_us", "p50 us"),):
                ratios = []
                rr = {x["round"]: num(x[field]) for x in r}
                for x in p:
                    a, b = num(x[field]), rr.get(x["round"])
                    if a is not None and b:
                        ratios.append(a / b)
                s = stats(ratios)
                ratio = f"{s[0]:.2f} ({s[1]:.2f}-{s[2]:.2f})" if s else "-"
                print(
                    f"| {k} | {load} | {label} | {cell([num(x[field]) for x in p])} "
                    f"| {cell([num(x[field]) for x in r])} | {ratio} |"
                )
            if load.startswith("rate"):
                for name, sel in (("parlor", p), ("redis", r)):
                    ach = [num(x["achieved_msgs_per_s"]) for x in sel]
                    tgt = [num(x["target_msgs_per_s"]) for x in sel]
                    if ach and tgt and tgt[0]:
                        short = sum(1 for a in ach if a is not None and a < 0.99 * tgt[0])
                        print(
                            f"| {k} | {load} | publisher achieved msg/s ({name}) | "
                            f"{cell(ach)} | target {tgt[0]:.0f} | {short} of {len(ach)} runs short |"
                        )
    print(f"\nRounds: {len(set(r['round'] for r in rows))}.")
    print(loadavg_note(rows))


ECHO_SERVERS = ("epoll", "parlor", "parlor_w1")
ECHO_TARGET = 1.2


def echo_cpu(rows):
    """parlor serve --echo against the C epoll baseline (benches/echo_cpu.sh)."""
    by = defaultdict(list)
    for r in rows:
        by[(r["load"], r["server"])].append(r)
    loads = sorted({r["load"] for r in rows}, key=lambda l: (int(l.split("x")[0]), l))
    workers = sorted({r["workers"] for r in rows if r["server"] == "parlor" and r["workers"]})
    print("parlor serve --echo vs a single-threaded epoll echo server in C (median, range, "
          "± half the spread):\n")
    print("| load | server | msgs/s | p99 us | server CPU ns/msg |")
    print("|---|---|---:|---:|---:|")
    for load in loads:
        for server in ECHO_SERVERS:
            sel = by.get((load, server), [])
            if sel:
                print(
                    f"| {load} | {server} | {cell([num(r['msgs_per_s']) for r in sel])} "
                    f"| {cell([num(r['p99_us']) for r in sel])} "
                    f"| {cell([num(r['server_cpu_ns_per_msg']) for r in sel])} |"
                )
    print(f"\nLoads: CONNSxBYTES, 16 in flight per connection. parlor: default workers "
          f"({', '.join(workers) or '?'}); parlor_w1: --workers 1.")
    print(f"Rounds: {len(set(r['round'] for r in rows))}.")
    print(loadavg_note(rows))
    print(f"\nServer CPU per message relative to epoll, per round (median, min-max; "
          f"target: at most {ECHO_TARGET}):\n")
    print("| load | server | CPU ratio to epoll | rounds within target |")
    print("|---|---|---:|---:|")
    for load in loads:
        base = {r["round"]: num(r["server_cpu_ns_per_msg"]) for r in by.get((load, "epoll"), [])}
        for server in ECHO_SERVERS[1:]:
            ratios = []
            for r in by.get((load, server), []):
                a, b = num(r["server_cpu_ns_per_msg"]), base.get(r["round"])
                if a is not None and b:
                    ratios.append(a / b)
            s = stats(ratios)
            if s:
                within = sum(1 for x in ratios if x <= ECHO_TARGET)
                print(f"| {load} | {server} | {s[0]:.2f} ({s[1]:.2f}-{s[2]:.2f}) "
                      f"| {within} of {len(ratios)} |")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("pool_sizes_mc", "criterion", "vs_redis", "echo_cpu"):
        sys.exit(__doc__)
    kind, path = sys.argv[1:]
    rows = read(path)
    if not rows:
        sys.exit(f"{path}: no runs")
    {"pool_sizes_mc": pool_sizes_mc, "criterion": criterion, "vs_redis": vs_redis,
     "echo_cpu": echo_cpu}[kind](rows)


if __name__ == "__main__":
    main()
