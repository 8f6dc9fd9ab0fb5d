#!/usr/bin/env python3
"""Summarize bench/mesh.sh's results file as markdown tables, with the goals met or missed.

Usage: mesh_report.py RESULTS DIST_JOBS DIST_CHAIN DIST_SECS

RESULTS has one line per measurement, `key=value` words (as mesh.sh writes them). Figures are
medians over the runs (the runs are listed beside them); ratios are ratios of medians.
"""

import statistics
import sys


def parse(path):
    rows = []
    for line in open(path):
        row = {}
        for word in line.split():
            if "=" in word:
                key, value = word.split("=", 1)
                row[key] = value
        if "part" in row:
            rows.append(row)
    return rows


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def med(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def runs(values, fmt="{:.2f}"):
    return " / ".join(fmt.format(v) for v in values)


def verdict(value, goal):
    if value != value:
        return "not measured"
    return "**met**" if value <= goal else f"**missed** ({value / goal:.1f}× the goal)"


def hits(rows):
    rows = [r for r in rows if r["part"] == "hits"]
    if not rows:
        return
    print("### Peer cache-hit latency\n")
    print("| variant | lookups | p50 ms | p99 ms | p50 runs | p99 runs | B's build ms | per lookup | A's build ms (ran them) | all from A's cache |")
    print("|---|---:|---:|---:|---|---|---:|---:|---:|---|")
    verdicts = {}
    for variant in ("chain/last", "chain/all", "fan/gather", "fan/all"):
        vr = [r for r in rows if r["variant"] == variant]
        if not vr:
            continue
        p50s = [num(r["p50"]) for r in vr]
        p99s = [num(r["p99"]) for r in vr]
        ms = med([num(r["ms"]) for r in vr])
        a_ms = med([num(r.get("a_ms")) for r in vr])
        n = int(vr[0]["n"]) + (1 if variant.startswith("fan") else 0)
        all_peer = all(r["peer_hits"] == r["cached"] and int(r["cached"]) == n and r["ran"] == "0" for r in vr)
        if variant.startswith("chain"):
            per = f"{ms / n:.2f} ms"
        else:
            per = f"{n / ms * 1000:,.0f} hits/s"
        print(f"| {variant} | {n} | {med(p50s):.2f} | {med(p99s):.2f} | {runs(p50s)} | {runs(p99s)} "
              f"| {ms:.0f} | {per} | {a_ms:.0f} | {'yes' if all_peer else 'NO'} |")
        verdicts[variant] = (med(p50s), med(p99s))
    print()
    notes = {
        "chain/last": "one lookup at a time, no output fetched: the per-action latency",
        "chain/all": "one lookup at a time, each also fetching the job's output tree",
        "fan/gather": "all lookups at once: each waits behind the others",
        "fan/all": "all lookups at once, each also fetching its output tree",
    }
    for variant, (p50, p99) in verdicts.items():
        print(f"- {variant} ({notes[variant]}): p50 {p50:.2f} ms (goal <= 2): {verdict(p50, 2)}; "
              f"p99 {p99:.2f} ms (goal <= 10): {verdict(p99, 10)}")
    print()


def dist(rows, jobs, chain, secs):
    rows = [r for r in rows if r["part"] == "dist"]
    if not rows:
        return
    print("### Distribution efficiency\n")
    print(f"{jobs} independent `sleep {secs}` jobs plus a {chain}-job chain of the same; "
          f"makespan = the build's `Done.duration_ms`. The measured-work bound uses the mean "
          f"job time of the `Finished` events (its commands, process start included; not the "
          f"sandbox setup or output collection) instead of "
          f"{secs} s.\n")
    print("| setup | slots | lower bound s | makespan s (median) | runs s | ÷ lower bound | speedup vs 1 node | mean job s | ÷ measured-work bound | jobs per node (last run) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---|")
    solo = [r for r in rows if r["mode"] == "solo1"]
    solo_med = med([num(r["ms"]) / 1000 for r in solo]) if solo else float("nan")
    ratios = {}
    for mode, label in (("mesh4", "4 nodes × `-j 2`"), ("solo1", "1 node × `-j 2`, no team")):
        mr = [r for r in rows if r["mode"] == mode]
        if not mr:
            continue
        slots = int(mr[0]["slots"])
        n = jobs + chain
        bound = max(chain * secs, n * secs / slots)
        spans = [num(r["ms"]) / 1000 for r in mr]
        span = med(spans)
        mean_job = med([num(r["finished_ms"]) / 1000 / max(int(r["ran"]), 1) for r in mr])
        # The same bound with each job's measured run time (Finished.duration_ms) for the sleep.
        measured = max(chain * mean_job, n * mean_job / slots)
        ok = all(r["ok"] == "True" and r["ran"] == str(n) for r in mr)
        ratios[mode] = span / bound
        print(f"| {label} | {slots} | {bound:.2f} | {span:.2f} | {runs(spans)} | {span / bound:.3f} "
              f"| {solo_med / span:.2f} | {mean_job:.3f} | {span / measured:.3f} "
              f"| {mr[-1]['per_node'] if ok else 'FAILED'} |")
    print()
    if "mesh4" in ratios:
        r = ratios["mesh4"]
        print(f"- 4 nodes: makespan {r:.3f} × the lower bound (goal <= 1.10): "
              + ("**met**" if r <= 1.10 else f"**missed**, by {(r - 1.10) * 100:.1f} points"))
    print()


def steal(rows):
    waits = [r for r in rows if r["part"] == "steal"]
    thief = {r["run"]: r for r in rows if r["part"] == "steal_thief"}
    if not waits:
        return
    print("### Steal latency\n")
    print("| run | links | lent / taken | ready → lent p50 / p99 ms | lease travel p50 / p99 ms | sandbox + process start p50 / p99 ms | lent → start p50 / p99 ms | link cycle − sleep p50 / p99 ms |")
    print("|---:|---:|---|---|---|---|---|---|")
    est = []
    for r in waits:
        t = thief.get(r["run"], {})
        pair = lambda k: f"{num(t.get(k + '_p50')):.1f} / {num(t.get(k + '_p99')):.1f}"
        print(f"| {r['run']} | {r['n']} | {r['lent']} / {r['taken']} | {num(r['wait_p50']):.1f} / {num(r['wait_p99']):.1f} "
              f"| {pair('grant')} | {pair('spawn')} | {pair('lent_to_start')} | {pair('cycle')} |")
        est.append(num(r["wait_p50"]) + num(t.get("lent_to_start_p50")))
    wait = med([num(r["wait_p50"]) for r in waits])
    total = med(est)
    print()
    print(f"- ready → lent (O's own figure), median p50 over runs: {wait:.1f} ms; "
          f"ready → process start on T, estimated as that plus the lent → start p50: {total:.1f} ms "
          f"(goal <= 20): {verdict(total, 20)}")
    print()


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    rows = parse(sys.argv[1])
    jobs, chain, secs = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    hits(rows)
    dist(rows, jobs, chain, secs)
    steal(rows)


if __name__ == "__main__":
    main()
