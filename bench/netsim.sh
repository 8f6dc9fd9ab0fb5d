#!/usr/bin/env bash
# netsim benchmarks (issue 5, section 4), printed as markdown for bench/RESULTS.md:
#
#   1. Scale: netsim/scenarios/scale/nodes-{10,100,1000}.toml, one build of a 100,000-job
#      layered graph on 10, 100 and 1,000 nodes of 8 slots, 1 ms LAN. For each: the
#      makespan / lower-bound ratio, gossip convergence p99, data+rpc bytes per job, steal
#      requests, and the simulator's wall time and peak RSS (median of RUNS runs; the
#      simulated figures are the same in every run, by determinism).
#   2. Tuning: bench/netsim_tune.py over the shipped scenarios and a 100-node, 20,000-job
#      build, each knob varied alone from the defaults, SEEDS seeds each (medians).
#
# Usage: bench/netsim.sh        (from anywhere; builds the release binary first)
# Knobs: RUNS   runs of each scale scenario for the wall time (default 1)
#        SEEDS  seeds per tuning setting (default 3)
#        PARTS  "scale tune" (default both)
#        SIZES  node counts for the scale part (default "10 100 1000")
# The 1,000-node run takes under a minute and about 4 GB of memory.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
SEEDS=${SEEDS:-3}
PARTS=${PARTS:-scale tune}
SIZES=${SIZES:-10 100 1000}

cargo build --release --locked -q -p weft-netsim
BIN=target/release/weft-netsim
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "- date: $(date -u); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

if [[ " $PARTS " == *" scale "* ]]; then
    echo "| nodes | jobs | makespan | lower bound | ratio | convergence p99 | data+rpc per job | steal requests | wall time (median of $RUNS) | peak RSS |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in $SIZES; do
        scenario=netsim/scenarios/scale/nodes-$n.toml
        walls=()
        for ((i = 0; i < RUNS; i++)); do
            /usr/bin/time -f "%e %M" -o "$WORK/time" "$BIN" "$scenario" > "$WORK/out"
            read -r wall rss < "$WORK/time"
            walls+=("$wall")
        done
        median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        python3 - "$WORK/out" "$n" "$median" "$rss" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
n, wall, rss = sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
m = re.search(r"makespan\s+(\S+)\s+lower bound (\S+)\s+ratio (\S+)", out)
conv = re.search(r"p99 (\S+)", out).group(1)
per_job = re.search(r"data\+rpc per job (\S+ \S+)", out).group(1)
jobs = re.search(r"(\d+) in builds", out).group(1)
steals = re.search(r"stealing\s+(\d+) attempts, (\d+) successes", out)
print(f"| {n} | {int(jobs):,} | {m.group(1)} | {m.group(2)} | {m.group(3)} | {conv} | {per_job} "
      f"| {int(steals.group(1)):,} ({int(steals.group(2)):,} granted) | {wall:.1f} s | {rss / 1048576:.1f} GiB |")
PY
    done
    echo
fi

if [[ " $PARTS " == *" tune "* ]]; then
    sed 's/jobs = 100000/jobs = 20000/; s/^name = .*/name = "100 nodes, 20k jobs"/' \
        netsim/scenarios/scale/nodes-100.toml > "$WORK/mid-100.toml"
    python3 bench/netsim_tune.py "$BIN" "$SEEDS" \
        netsim/scenarios/office-lan.toml "$WORK/mid-100.toml" netsim/scenarios/heavy-churn.toml \
        netsim/scenarios/flaky-wifi.toml netsim/scenarios/partition-heals.toml
fi
