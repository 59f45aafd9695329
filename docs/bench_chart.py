#!/usr/bin/env python3
"""Draws docs/pool_sizes.svg (and docs/vs_redis.svg) from the bench results.

    python3 docs/bench_chart.py            # reads benches/results/*.csv

pool_sizes.svg: for each load (echo, fanout, mixed), throughput against the worker
pool size (criterion, benches/pool_sizes.rs, and multi_client, benches/pool_sizes.sh)
and multi_client's p99 latency. vs_redis.svg: parlor and redis-server side by side
(benches/vs_redis.sh). Points are medians of the runs; whiskers span min to max.
Standard library only: the SVG is written by hand.
"""

import csv
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
POOLS = (1, 2, 4, 8)
LOADS = (
    ("echo", "echo: 64 conns, 64 B, 16 in flight", "round trips/s"),
    ("fanout", "fan-out: 1 sender to 100 members", "deliveries/s"),
    ("mixed", "mixed: 200 clients in 10 rooms", "deliveries/s"),
)
COLORS = {"criterion": "#1f77b4", "multi_client": "#d62728", "parlor": "#1f77b4", "redis": "#d62728"}
FONT = "font-family='sans-serif'"


def read(name):
    path = RESULTS / name
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def spread(values):
    values = [float(v) for v in values if v not in ("", None)]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def nice_max(v):
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * exp >= v:
            return step * exp
    return 10 * exp


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Panel:
    """One small line chart: categorical x (the given labels), linear y from 0."""

    def __init__(self, x, y, w, h, title, ylabel, xlabels, xtitle, log=False, lines=True):
        self.x, self.y, self.w, self.h = x, y, w, h
        self.title, self.ylabel, self.xlabels, self.xtitle = title, ylabel, xlabels, xtitle
        self.log, self.lines = log, lines
        self.series = []  # (name, color, [(i, median, lo, hi)])

    def add(self, name, color, points):
        if points:
            self.series.append((name, color, points))

    def svg(self):
        out = []
        left, bottom = self.x + 58, self.y + self.h - 34
        top, right = self.y + 24, self.x + self.w - 10
        values = [v for _, _, pts in self.series for p in pts for v in p[1:] if v > 0]
        n = len(self.xlabels)
        if self.log:
            lo_exp = math.floor(math.log10(min(values, default=1)))
            hi_exp = math.ceil(math.log10(max(values, default=10)))
            hi_exp = max(hi_exp, lo_exp + 1)
            ticks = [10.0**e for e in range(lo_exp, hi_exp + 1)]

            def py(v):
                frac = (math.log10(max(v, 10.0**lo_exp)) - lo_exp) / (hi_exp - lo_exp)
                return bottom - (bottom - top) * frac
        else:
            top_value = nice_max(max(values, default=1))
            ticks = [top_value * k / 4 for k in range(5)]

            def py(v):
                return bottom - (bottom - top) * v / top_value

        def px(i):
            return left + (right - left) * (i + 0.5) / n

        out.append(
            f"<text x='{self.x + self.w / 2}' y='{self.y + 14}' text-anchor='middle' "
            f"font-size='12' font-weight='bold' {FONT}>{esc(self.title)}</text>"
        )
        for v in ticks:
            yy = py(v)
            out.append(f"<line x1='{left}' y1='{yy:.1f}' x2='{right}' y2='{yy:.1f}' stroke='#ddd'/>")
            out.append(
                f"<text x='{left - 4}' y='{yy + 4:.1f}' text-anchor='end' font-size='10' {FONT}>{fmt(v)}</text>"
            )
        out.append(f"<line x1='{left}' y1='{top}' x2='{left}' y2='{bottom}' stroke='#333'/>")
        out.append(f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#333'/>")
        for i, label in enumerate(self.xlabels):
            spans = "".join(
                f"<tspan x='{px(i):.1f}' dy='{0 if j == 0 else 11}'>{esc(part)}</tspan>"
                for j, part in enumerate(str(label).split("\n"))
            )
            out.append(f"<text y='{bottom + 14}' text-anchor='middle' font-size='10' {FONT}>{spans}</text>")
        lines_below = max(str(label).count("\n") for label in self.xlabels)
        out.append(
            f"<text x='{(left + right) / 2}' y='{bottom + 28 + 11 * lines_below}' text-anchor='middle' "
            f"font-size='10' {FONT}>{esc(self.xtitle)}</text>"
        )
        cy = (top + bottom) / 2
        out.append(
            f"<text x='{self.x + 12}' y='{cy}' text-anchor='middle' font-size='10' {FONT} "
            f"transform='rotate(-90 {self.x + 12} {cy})'>{esc(self.ylabel)}</text>"
        )
        for s, (name, color, points) in enumerate(self.series):
            offset = (s - (len(self.series) - 1) / 2) * 5
            path = " ".join(
                f"{'M' if j == 0 else 'L'}{px(i) + offset:.1f},{py(m):.1f}" for j, (i, m, _, _) in enumerate(points)
            )
            if self.lines:
                out.append(f"<path d='{path}' fill='none' stroke='{color}' stroke-width='1.5'/>")
            for i, m, lo, hi in points:
                xx = px(i) + offset
                out.append(
                    f"<line x1='{xx:.1f}' y1='{py(lo):.1f}' x2='{xx:.1f}' y2='{py(hi):.1f}' stroke='{color}'/>"
                )
                for v in (lo, hi):
                    out.append(
                        f"<line x1='{xx - 3:.1f}' y1='{py(v):.1f}' x2='{xx + 3:.1f}' y2='{py(v):.1f}' stroke='{color}'/>"
                    )
                out.append(f"<circle cx='{xx:.1f}' cy='{py(m):.1f}' r='3' fill='{color}'/>")
        return out


def legend(x, y, entries):
    out = []
    for k, (name, color) in enumerate(entries):
        xx = x + k * 190
        out.append(f"<line x1='{xx}' y1='{y}' x2='{xx + 18}' y2='{y}' stroke='{color}' stroke-width='2'/>")
        out.append(f"<circle cx='{xx + 9}' cy='{y}' r='3' fill='{color}'/>")
        out.append(f"<text x='{xx + 24}' y='{y + 4}' font-size='11' {FONT}>{esc(name)}</text>")
    return out


def document(width, height, title, note, body):
    return "\n".join(
        [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>",
            f"<rect width='{width}' height='{height}' fill='white'/>",
            f"<text x='{width / 2}' y='20' text-anchor='middle' font-size='14' font-weight='bold' {FONT}>{esc(title)}</text>",
            f"<text x='{width / 2}' y='{height - 8}' text-anchor='middle' font-size='10' fill='#555' {FONT}>{esc(note)}</text>",
            *body,
            "</svg>",
            "",
        ]
    )


def commits(*tables):
    found = sorted({r["commit"] for rows in tables for r in rows})
    return ", ".join(found) or "?"


def pool_sizes_svg():
    crit = read("pool_sizes_criterion.csv")
    mc = read("pool_sizes_mc.csv")
    if not crit and not mc:
        return None
    pw, ph = 320, 230
    body = []
    for col, (load, title, unit) in enumerate(LOADS):
        thr = Panel(col * pw, 30, pw, ph, title, unit, POOLS, "workers")
        lat = Panel(
            col * pw, 30 + ph, pw, ph, "p99 latency (multi_client, log scale)", "p99 latency, us", POOLS, "workers",
            log=True,
        )
        for name, rows, field in (("criterion", crit, "per_s"), ("multi_client", mc, "per_s")):
            pts = []
            for i, w in enumerate(POOLS):
                s = spread([r[field] for r in rows if r["load"] == load and int(r["workers"]) == w])
                if s:
                    pts.append((i, *s))
            thr.add(name, COLORS[name], pts)
        pts = []
        for i, w in enumerate(POOLS):
            s = spread([r["p99_us"] for r in mc if r["load"] == load and int(r["workers"]) == w])
            if s:
                pts.append((i, *s))
        lat.add("multi_client", COLORS["multi_client"], pts)
        body += thr.svg() + lat.svg()
    height = 30 + 2 * ph + 44
    body += legend(
        3 * pw / 2 - 190,
        height - 30,
        [("criterion bench (throughput)", COLORS["criterion"]), ("multi_client", COLORS["multi_client"])],
    )
    runs_c = len({r["run"] for r in crit})
    runs_m = len({r["round"] for r in mc})
    note = (
        f"parlor {commits(crit, mc)}, in-memory, 2-core VM shared with other jobs; "
        f"median of {runs_c} criterion runs and {runs_m} multi_client rounds, whiskers min-max"
    )
    return document(3 * pw, height, "parlor: throughput and p99 latency against worker pool size", note, body)


def load_order(load):
    """max first, then the paced loads by rate (rate500k: 500 000 deliveries/s)."""
    if load == "max":
        return (0, 0)
    digits = "".join(c for c in load if c.isdigit())
    return (1, int(digits) if digits else 0)


def vs_redis_svg():
    rows = read("vs_redis.csv")
    if not rows:
        return None
    pw, ph = 360, 250
    loads = sorted({r["load"] for r in rows}, key=load_order)
    groups = [(k, load) for k in sorted({int(r["subscribers"]) for r in rows}) for load in loads]
    labels = [f"K={k}\n{'max' if load == 'max' else load[4:] + '/s'}" for k, load in groups]
    metrics = (
        ("deliveries_per_s", "deliveries/s", "deliveries/s", False),
        ("p99_us", "p99 send-to-delivery latency (log)", "p99 latency, us", True),
        ("server_cpu_ns_per_delivery", "server CPU per delivery", "ns", False),
    )
    body = []
    for col, (field, title, unit, log) in enumerate(metrics):
        panel = Panel(
            col * pw, 30, pw, ph, title, unit, labels, "max: 16 in flight; N/s: paced deliveries", log=log,
            lines=False,
        )
        for server in ("parlor", "redis"):
            pts = []
            for i, (k, load) in enumerate(groups):
                s = spread(
                    [
                        r[field]
                        for r in rows
                        if r["server"] == server and int(r["subscribers"]) == k and r["load"] == load
                    ]
                )
                if s:
                    pts.append((i, *s))
            panel.add(server, COLORS[server], pts)
        body += panel.svg()
    height = 30 + ph + 60
    body += legend(3 * pw / 2 - 120, height - 30, [("parlor", COLORS["parlor"]), ("redis-server", COLORS["redis"])])
    note = (
        f"parlor {commits(rows)} vs redis-server, 128-byte payloads, same client; "
        f"median of {len({r['round'] for r in rows})} rounds, whiskers min-max"
    )
    return document(3 * pw, height, "parlor vs redis pub/sub fan-out", note, body)


def main():
    wrote = False
    for name, make in (("pool_sizes.svg", pool_sizes_svg), ("vs_redis.svg", vs_redis_svg)):
        svg = make()
        if svg is None:
            print(f"bench_chart: no results for {name} in {RESULTS}", file=sys.stderr)
            continue
        path = ROOT / "docs" / name
        path.write_text(svg)
        print(f"bench_chart: wrote {path.relative_to(ROOT)}")
        wrote = True
    if not wrote:
        sys.exit(1)


if __name__ == "__main__":
    main()
