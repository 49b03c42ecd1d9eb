#!/usr/bin/env python3
"""Turns the harness's raw measurements into markdown tables: the median of
each figure over the rounds, and each figure as a ratio to nginx.

Input (argv[1]): tab-separated rows
  load target round requests duration_us errors p50_us p99_us p999_us cpu_ticks hwm_kb
and (argv[2], optional) idle-memory rows
  target held rss_before_kb rss_after_kb
"""
import os
import statistics
import sys
from collections import defaultdict

TICKS = os.sysconf("SC_CLK_TCK")
ORDER = ["direct", "tidegate", "tidegate-b", "nginx", "haproxy"]
LABEL = {"direct": "origins direct (limit)", "tidegate": "tidegate",
         "tidegate-b": "tidegate (B: TIDEGATE_B_BIN)", "nginx": "nginx", "haproxy": "HAProxy"}


def fmt_ratio(value, base, lower_is_better):
    if not base or value is None:
        return ""
    ratio = value / base
    return f" ({ratio:.2f}x)"


def throughput(path):
    rows = defaultdict(list)
    loads = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) != 11:
                continue
            load, target = p[0], p[1]
            req, dur, err, p50, p99, p999, ticks, hwm = map(int, p[3:])
            if load not in loads:
                loads.append(load)
            rows[(load, target)].append({
                "rps": req / (dur / 1e6) if dur else 0.0,
                "p50": p50 / 1000, "p99": p99 / 1000, "p999": p999 / 1000,
                "err": err,
                "cpu": (ticks / TICKS) / req * 100_000 if req and target != "direct" else None,
                "hwm": hwm / 1024 if target != "direct" else None,
            })
    out = []
    for load in loads:
        out.append(f"\n### {load}\n")
        out.append("| proxy | req/s | p50 ms | p99 ms | p99.9 ms | errors | CPU s / 100k req | peak RSS MiB |")
        out.append("|---|---|---|---|---|---|---|---|")
        med = {}
        for target in ORDER:
            runs = rows.get((load, target))
            if not runs:
                continue
            m = {}
            for k in ("rps", "p50", "p99", "p999", "err", "cpu", "hwm"):
                vals = [r[k] for r in runs if r[k] is not None]
                if k == "err":
                    m[k] = sum(vals)
                elif k == "hwm":
                    m[k] = max(vals) if vals else None
                else:
                    m[k] = statistics.median(vals) if vals else None
            med[target] = m
        base = med.get("nginx", {})
        for target in ORDER:
            if target not in med:
                continue
            m = med[target]
            cells = [LABEL[target]]
            cells.append(f"{m['rps']:,.0f}" + fmt_ratio(m["rps"], base.get("rps"), False))
            for k in ("p50", "p99", "p999"):
                cells.append(f"{m[k]:.2f}" + fmt_ratio(m[k], base.get(k), True))
            cells.append(str(m["err"]))
            cells.append("-" if m["cpu"] is None else
                         f"{m['cpu']:.2f}" + fmt_ratio(m["cpu"], base.get("cpu"), True))
            cells.append("-" if m["hwm"] is None else
                         f"{m['hwm']:.1f}" + fmt_ratio(m["hwm"], base.get("hwm"), True))
            out.append("| " + " | ".join(cells) + " |")
    return out


def idle(path):
    out = ["",
           "| proxy | connections held | RSS before MiB | RSS holding MiB | bytes / connection |",
           "|---|---|---|---|---|"]
    per = {}
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) != 4:
                continue
            target, held, before, after = p[0], int(p[1]), int(p[2]), int(p[3])
            bpc = (after - before) * 1024 / held if held else 0.0
            per[target] = bpc
            rows.append((target, held, before, after, bpc))
    most = max((held for _, held, _, _, _ in rows), default=0)
    out[0] = f"\n### {most:,} idle keep-alive client connections\n"
    for target, held, before, after, bpc in rows:
        out.append(f"| {LABEL[target]} | {held:,} | {before / 1024:.1f} | {after / 1024:.1f} | "
                   f"{bpc:,.0f}{fmt_ratio(bpc, per.get('nginx'), True)} |")
    return out


def main():
    lines = throughput(sys.argv[1])
    if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
        lines += idle(sys.argv[2])
    print("\n".join(lines).lstrip("\n"))


if __name__ == "__main__":
    main()
