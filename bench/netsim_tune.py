#!/usr/bin/env python3
"""Tunes the stealing policy with netsim: runs each scenario under each `--core` setting for
several seeds and prints a markdown table of medians: the builds' time over their bounds
(summed over the builds that had work left: the overall makespan ratio hides a slow early
build behind a late one), duplicated jobs, data+rpc bytes per job, steal requests per job.

Usage: bench/netsim_tune.py WEFT_NETSIM SEEDS SCENARIO.toml...
The settings tried are in SETTINGS below; each varies one knob from the defaults. With
TUNE_ONLY=text, only the settings whose label contains that text run."""

import os
import re
import statistics
import subprocess
import sys

SETTINGS = [
    ("defaults", []),
    ("steal_batch=1", ["steal_batch=1"]),
    ("steal_batch=2", ["steal_batch=2"]),
    ("steal_batch=8", ["steal_batch=8"]),
    ("steal_batch=16", ["steal_batch=16"]),
    ("lease_ttl=5s", ["lease_ttl=5s"]),
    ("lease_ttl=30s", ["lease_ttl=30s"]),
    ("steal_fanout=1", ["steal_fanout=1"]),
    ("steal_fanout=4", ["steal_fanout=4"]),
    ("steal_backoff=5ms", ["steal_backoff=5ms"]),
    ("steal_backoff=20ms", ["steal_backoff=20ms"]),
    ("steal_backoff=500ms", ["steal_backoff=500ms"]),
    ("reserve_for=0", ["reserve_for=0ms"]),
    ("reserve_for=20ms", ["reserve_for=20ms"]),
    ("reserve_for=50ms", ["reserve_for=50ms"]),
    ("reserve_for=200ms", ["reserve_for=200ms"]),
]


def micros(text):
    """`850us`, `12.3ms`, `4.56s`, `4m01s` as microseconds."""
    m = re.fullmatch(r"(\d+)m(\d+)s", text)
    if m:
        return (int(m.group(1)) * 60 + int(m.group(2))) * 1e6
    for unit, scale in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(text)


def run(binary, scenario, seed, sets):
    cmd = [binary, scenario, "--seed", str(seed)]
    for s in sets:
        cmd += ["--core", s]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    took = bound = 0.0
    for t, b in re.findall(r"ok in (\S+) \(bound (\S+)\)", out):
        if micros(b) > 0:
            took, bound = took + micros(t), bound + micros(b)
    ratio = took / bound if bound else float("nan")
    executed = int(re.search(r"(\d+) executed", out).group(1))
    dup = int(re.search(r"(\d+) duplicated", out).group(1))
    per_job = re.search(r"data\+rpc per job (\S+) (\S+)", out)
    scale = {"B": 1e-3, "KB": 1, "MB": 1e3, "GB": 1e6}[per_job.group(2)]
    attempts = int(re.search(r"stealing\s+(\d+) attempts", out).group(1))
    ok = "ok" in re.search(r"build 0 .*", out).group(0)
    return ratio, dup, float(per_job.group(1)) * scale, attempts / max(executed, 1), ok


def main():
    binary, seeds, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    print("| scenario | setting | build time / bound | duplicated | KB per job | steal requests per job |")
    print("|---|---|---:|---:|---:|---:|")
    for scenario in scenarios:
        name = scenario.rsplit("/", 1)[-1].removesuffix(".toml")
        only = os.environ.get("TUNE_ONLY", "")
        for label, sets in SETTINGS:
            if only not in label:
                continue
            runs = [run(binary, scenario, seed, sets) for seed in range(1, seeds + 1)]
            if not all(r[4] for r in runs):
                label += " (a build failed)"
            med = lambda i: statistics.median(r[i] for r in runs)
            print(f"| {name} | {label} | {med(0):.3f} | {med(1):.0f} | {med(2):.0f} | {med(3):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
