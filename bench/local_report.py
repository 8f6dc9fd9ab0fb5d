#!/usr/bin/env python3
"""The report of bench/local.sh: markdown tables from its results directory.

Usage: local_report.py RESULTS_DIR N_JOBS C_FILES

Reads the hyperfine JSON exports (`*.json`), the RSS figures (`*rss.txt`), the load averages
(`load.txt`), the machine note (`machine.txt`) and the daemon logs (`logs/*.log`), and prints
the tables, the goals (met or missed, and by how much) and the daemon's phase timings.

Phases, from the daemon's log lines of one build (all times from the moment the daemon took
the request):
  planned  load_ms lower_ms   evaluating the BUILD files, then lowering targets to jobs
                              (source digests, toolchain fingerprints)
  jobs done run_ms            cumulative: so execute = run_ms - load_ms - lower_ms is the
                              scheduling, cache lookups and job runs
  build done total_ms         cumulative: so publish = total_ms - run_ms is materializing the
                              outputs into weft-out/
"""

import glob
import json
import os
import re
import statistics
import sys

MIB = 1024


def hyperfine(res, name):
    """The runs of every round of one comparison (`NAME.r<round>.json`), merged by command,
    in the order of the commands: {command: {"median", "min", "max", "times"}}."""
    merged = {}
    for path in sorted(glob.glob(os.path.join(res, f"{name}.r*.json"))):
        with open(path) as f:
            for r in json.load(f)["results"]:
                merged.setdefault(r["command"], []).extend(r["times"])
    return {command: {"median": statistics.median(times), "min": min(times),
                      "max": max(times), "times": times}
            for command, times in merged.items()}


def secs(t):
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def kv(path):
    out = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                out[k] = int(v)
    return out


def phases(path):
    """Per-build phase timings (ms) from a daemon log."""
    builds = []
    cur = None
    if not os.path.exists(path):
        return builds
    with open(path) as f:
        for line in f:
            m = re.search(r"planned n_targets=(\d+) load_ms=(\d+) lower_ms=(\d+)", line)
            if m:
                cur = {"targets": int(m[1]), "load": int(m[2]), "lower": int(m[3])}
                continue
            m = re.search(r"jobs done run_ms=(\d+)", line)
            if m and cur is not None:
                cur["run"] = int(m[1])
                continue
            m = re.search(r"build done total_ms=(\d+)", line)
            if m and cur is not None and "run" in cur:
                cur["total"] = int(m[1])
                cur["execute"] = cur["run"] - cur["load"] - cur["lower"]
                cur["publish"] = cur["total"] - cur["run"]
                builds.append(cur)
                cur = None
    return builds


def phase_row(label, path):
    builds = phases(path)
    if not builds:
        return f"| {label} | 0 | | | | | |"
    med = {k: statistics.median(b[k] for b in builds)
           for k in ("load", "lower", "execute", "publish", "total")}
    return (f"| {label} | {len(builds)} | {med['load']:.0f} | {med['lower']:.0f} | "
            f"{med['execute']:.0f} | {med['publish']:.0f} | {med['total']:.0f} |")


PHASE_HEADER = [
    "| daemon log | builds | load | lower | execute | publish | total |",
    "|------------|-------:|-----:|------:|--------:|--------:|------:|",
]


def main():
    res, n_jobs, c_files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    goals = []

    print("### Machine and load\n")
    with open(os.path.join(res, "machine.txt")) as f:
        for line in f:
            print(f"- {line.strip()}")
    with open(os.path.join(res, "load.txt")) as f:
        loads = [line.split(None, 1) for line in f if line.strip()]
    print("- load average (1, 5, 15 min) at: " +
          "; ".join(f"{k} {v.strip()}" for k, v in loads))
    print()

    idle = kv(os.path.join(res, "idle-rss.txt"))
    print("### Daemon RSS\n")
    print("| figure | MiB |")
    print("|--------|----:|")
    print(f"| idle after startup (`weft info`, empty workspace) | "
          f"{idle['idle_after_start_kib'] / MIB:.1f} |")
    print(f"| idle after building an empty workspace | "
          f"{idle['idle_after_empty_build_kib'] / MIB:.1f} |")
    rss = {}
    for kind in ("cat", "exec"):
        path = os.path.join(res, f"jobs-{kind}-rss.txt")
        if not os.path.exists(path):
            continue
        rss[kind] = kv(path)
        print(f"| peak (VmHWM) of a fresh daemon over one clean build of {n_jobs} {kind} jobs | "
              f"{rss[kind]['peak_kib'] / MIB:.1f} |")
        print(f"| right after that build (VmRSS) | {rss[kind]['after_build_kib'] / MIB:.1f} |")
        print(f"| 5 s later, idle (VmRSS) | {rss[kind]['idle_after_build_kib'] / MIB:.1f} |")
    print()
    v = idle["idle_after_start_kib"] / MIB
    goals.append(("daemon idle RSS <= 30 MiB", f"{v:.1f} MiB", v <= 30,
                  f"{v - 30:.1f} MiB over"))
    for kind, r in rss.items():
        v = r["peak_kib"] / MIB
        goals.append((f"peak RSS during the {n_jobs} {kind} build <= 300 MiB", f"{v:.1f} MiB",
                      v <= 300, f"{v - 300:.1f} MiB over"))

    for kind in ("cat", "exec"):
        clean = hyperfine(res, f"jobs-{kind}-clean")
        if not clean:
            continue
        what = ("weft `cat` (no process) vs ninja `printf ... > $out`" if kind == "cat"
                else "weft `exec([\"cp\", IN, OUT])` vs ninja `cp $in $out`")
        print(f"### {n_jobs} `{kind}` jobs ({what})\n")
        noop = hyperfine(res, f"jobs-{kind}-noop")
        cached = hyperfine(res, f"jobs-{kind}-cached")
        ninja = clean["ninja -j2"]["median"]
        print("| build | command | runs | median | min to max | jobs/s | ratio |")
        print("|-------|---------|-----:|-------:|-----------:|-------:|------:|")
        for name, r in clean.items():
            ratio = "1 (peer)" if name == "ninja -j2" else f"{ninja / r['median']:.2f}x ninja"
            print(f"| clean | {name} | {len(r['times'])} | {secs(r['median'])} | {secs(r['min'])} to "
                  f"{secs(r['max'])} | {n_jobs / r['median']:,.0f} | {ratio} |")
        ninja_noop = noop["ninja -j2 (no-op)"]["median"]
        for name, r in noop.items():
            ratio = ("1 (peer)" if name.startswith("ninja")
                     else f"{r['median'] / ninja_noop:.2f}x ninja's time")
            print(f"| no-op | {name} | {len(r['times'])} | {secs(r['median'])} | {secs(r['min'])} to "
                  f"{secs(r['max'])} | | {ratio} |")
        for name, r in cached.items():
            print(f"| cached | {name} | {len(r['times'])} | {secs(r['median'])} | {secs(r['min'])} to "
                  f"{secs(r['max'])} | {n_jobs / r['median']:,.0f} | goal 2 s |")
        print()
        print("Clean-build ratio: ninja's median time / weft's (a throughput ratio, higher is "
              "better for weft). No-op ratio: weft's median time / ninja's (lower is better).\n")
        print("Daemon phases, medians in ms (execute = scheduling, cache lookups and jobs; "
              "publish = `weft-out/`):\n")
        print("\n".join(PHASE_HEADER))
        print(phase_row("clean, cold daemon", os.path.join(res, "logs", f"jobs-{kind}-clean-cold.log")))
        print(phase_row("clean, warm daemon", os.path.join(res, "logs", f"jobs-{kind}-clean-warm.log")))
        print(phase_row("no-op", os.path.join(res, "logs", f"jobs-{kind}-noop.log")))
        print(phase_row("cached after clean", os.path.join(res, "logs", f"jobs-{kind}-cached.log")))
        print()

        warm = clean["weft, warm daemon"]["median"]
        ratio = ninja / warm
        goals.append((f"{kind}: clean throughput >= 0.8x ninja (warm daemon, empty store)",
                      f"{ratio:.3f}x", ratio >= 0.8,
                      f"{(0.8 - ratio) / 0.8 * 100:.1f}% short: weft needs "
                      f"{warm - ninja / 0.8:.2f} s less"))
        cold = clean["weft, cold daemon"]["median"]
        ratio = ninja / cold
        goals.append((f"{kind}: clean throughput >= 0.8x ninja (cold daemon, empty store)",
                      f"{ratio:.3f}x", ratio >= 0.8,
                      f"{(0.8 - ratio) / 0.8 * 100:.1f}% short: weft needs "
                      f"{cold - ninja / 0.8:.2f} s less"))
        w = [r for n, r in noop.items() if not n.startswith("ninja")][0]["median"]
        goals.append((f"{kind}: no-op no slower than ninja's", f"{secs(w)} vs {secs(ninja_noop)}",
                      w <= ninja_noop, f"{w / ninja_noop:.1f}x ninja's time, "
                      f"{(w - ninja_noop) * 1000:.0f} ms slower"))
        c = list(cached.values())[0]["median"]
        goals.append((f"{kind}: cached rebuild after `weft clean` <= 2 s", secs(c), c <= 2,
                      f"{c - 2:.2f} s over"))

    clean = hyperfine(res, "c-clean")
    if clean:
        print(f"### C code base: a {c_files}-file library plus a binary\n")
        cached = hyperfine(res, "c-cached")
        print("| build | command | runs | median | min to max | weft time / peer time |")
        print("|-------|---------|-----:|-------:|-----------:|----------------------:|")
        for label, runs in (("clean", clean), ("cached", cached)):
            peer = [r for n, r in runs.items() if n.startswith("make")][0]["median"]
            for name, r in runs.items():
                ratio = "1 (peer)" if name.startswith("make") else f"{r['median'] / peer:.2f}"
                print(f"| {label} | {name} | {len(r['times'])} | {secs(r['median'])} | {secs(r['min'])} to "
                      f"{secs(r['max'])} | {ratio} |")
        print()
        print("\n".join(PHASE_HEADER))
        print(phase_row("clean, warm daemon", os.path.join(res, "logs", "c-clean.log")))
        print(phase_row("cached after clean", os.path.join(res, "logs", "c-cached.log")))
        print()

    print("### Goals\n")
    print("| goal | figure | met? |")
    print("|------|--------|------|")
    for goal, figure, met, miss in goals:
        print(f"| {goal} | {figure} | {'**met**' if met else '**missed**: ' + miss} |")


if __name__ == "__main__":
    main()
