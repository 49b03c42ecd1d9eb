#!/usr/bin/env bash
# Runs the balancer benchmark and writes its medians into bench/RESULTS.md.
#
#   bench/balancers.sh                                   # full run, for the record
#   BENCH_NOTE="provisional: busy machine" bench/balancers.sh --warm-up-time 1 --measurement-time 2
#
# Arguments go to criterion. The table (algorithm x pool size x threads, median
# ns per pick) replaces the section between the balancers markers of
# bench/RESULTS.md, stamped with the date, the CPU model and the core count.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench balancers -- "$@"

model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
cores=$(nproc)
date=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

MODEL="$model" CORES="$cores" DATE="$date" COMMIT="$commit" ARGS="$*" NOTE="${BENCH_NOTE:-}" \
python3 - <<'PY'
import json, os, pathlib

root = pathlib.Path("target/criterion/pick")
sizes, threads = [2, 16, 128, 1024], [1, 2]
algorithms = ["round_robin", "weighted", "weighted_locked", "least_connections",
              "least_connections_exact", "ip_hash", "random", "peak_ewma", "adaptive"]

def median(alg, n, t):
    path = root / f"{alg}_{t}t" / str(n) / "new" / "estimates.json"
    try:
        return json.loads(path.read_text())["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None

header = "| algorithm | " + " | ".join(f"{n} × {t}t" for n in sizes for t in threads) + " | ≤ 50 ns at 1024 × 1t |"
rule = "|---|" + "---:|" * (len(sizes) * len(threads)) + ":---:|"
rows = []
for alg in algorithms:
    cells = [median(alg, n, t) for n in sizes for t in threads]
    at_1024 = median(alg, 1024, 1)
    if alg == "least_connections_exact":
        target = "exempt"
    elif at_1024 is None:
        target = "?"
    else:
        target = "yes" if at_1024 <= 50 else "no"
    rows.append(f"| {alg} | " + " | ".join("–" if c is None else f"{c:.1f}" for c in cells) + f" | {target} |")

env = os.environ
lines = [
    "<!-- balancers:begin -->",
    "## Balancers: ns per pick (median)",
    "",
    f"- Date: {env['DATE']}, commit {env['COMMIT']}",
    f"- Machine: {env['MODEL']}, {env['CORES']} cores",
    "- Command: `" + f"bench/balancers.sh {env['ARGS']}".strip() + "`",
]
if env.get("NOTE"):
    lines.append(f"- **{env['NOTE']}**")
lines += [
    "- A pick is what the proxy does per request: load the published table, pick, clone the instance `Arc`.",
    "  `n × 2t`: a second thread picks from the same balancer meanwhile; the figure is the measured thread's.",
    "  `weighted_locked` is nginx's SWRR under a mutex, the baseline for `weighted`'s lock-free cycle;",
    "  `least_connections` switches to two random choices above 16 instances, `least_connections_exact` never does.",
    "  The benchmark's instances have latency estimates of 1 to 8 ms (dispersion 0.51), so `adaptive` moves",
    "  from `round_robin` to `peak_ewma` after its first three measurements; its figure mixes the two.",
    "",
    header,
    rule,
    *rows,
    "<!-- balancers:end -->",
]
section = "\n".join(lines) + "\n"

results = pathlib.Path("bench/RESULTS.md")
text = results.read_text() if results.exists() else "# Benchmark results\n\n"
begin, end = "<!-- balancers:begin -->", "<!-- balancers:end -->"
if begin in text and end in text:
    before, rest = text.split(begin, 1)
    after = rest.split(end, 1)[1].lstrip("\n")
    text = before + section + ("\n" + after if after else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
results.write_text(text)
print(section)
PY
