#!/usr/bin/env bash
# Store benchmarks (issue 2, section 4), measured side by side with their peers in one run:
#
#   1. put_file of a 1 GiB file: `b3sum --num-threads 1`, `cp` and weft's put_file into a fresh
#      store, with hyperfine (medians and ratios);
#   2. 100,000 small blobs (1 KiB): puts/s and gets/s, next to what the file system alone
#      allows for the same create-write-rename pattern (`storebench fs-baseline`);
#   3. the action cache: puts/s and gets/s.
#
# Usage: bench/store.sh            (from anywhere; builds the release example first)
# Takes about 10 minutes on a 2-core machine, mostly creating and deleting ~600,000 small files.
# Record the results in bench/RESULTS.md.
# Knobs: TMPDIR       where the scratch directory goes (put it on the disk you care about)
#        SIZE_MIB     size of the big file (default 1024)
#        RUNS         hyperfine runs per command (default 10)
#        SMALL_RUNS   repetitions of the small-blob and action benchmarks (default 3)
#        SMALL_COUNT  blobs per small-blob run (default 100000)
#        SETTLE_SECS  pause before the small-blob runs (default 35; see below)
set -euo pipefail

cd "$(dirname "$0")/.."

missing=()
for tool in hyperfine b3sum; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "bench/store.sh needs: ${missing[*]}" >&2
    echo "install them with:   sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-10}
SMALL_RUNS=${SMALL_RUNS:-3}
SMALL_COUNT=${SMALL_COUNT:-100000}

cargo build --release -p weft-store --example storebench
BENCH=$PWD/target/release/examples/storebench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/weft-store-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FILE=$WORK/big.bin

echo "== machine"
date
uname -srm
nproc
uptime
df -hT "$WORK" | tail -1
echo

echo "== put_file of a ${SIZE_MIB} MiB file (random bytes), fresh store each run"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"
sync "$FILE"
hyperfine --warmup 2 --runs "$RUNS" --export-csv "$WORK/put_file.csv" \
    --prepare "rm -rf '$WORK/store' '$WORK/copy'" \
    -n b3sum "b3sum --num-threads 1 '$FILE'" \
    -n cp "cp '$FILE' '$WORK/copy'" \
    -n weft-put_file "'$BENCH' put-file '$WORK/store' '$FILE'"
rm -rf "$WORK/store" "$WORK/copy"

# CSV columns: command,mean,stddev,median,user,system,min,max
median() { awk -F, -v name="$1" '$1 == name { print $4 }' "$WORK/put_file.csv"; }
b3=$(median b3sum)
cp_s=$(median cp)
weft=$(median weft-put_file)
echo
awk -v b3="$b3" -v cp="$cp_s" -v weft="$weft" -v mib="$SIZE_MIB" 'BEGIN {
    bytes = mib * 1048576
    printf "%-16s %10s %10s\n", "command", "median s", "GB/s"
    printf "%-16s %10.3f %10.2f\n", "b3sum -t1", b3, bytes / b3 / 1e9
    printf "%-16s %10.3f %10.2f\n", "cp", cp, bytes / cp / 1e9
    printf "%-16s %10.3f %10.2f\n", "weft put_file", weft, bytes / weft / 1e9
    printf "weft put_file time / b3sum time: %.2f   / cp time: %.2f\n", weft / b3, weft / cp
    printf "goal >= 1.0 GB/s: %s\n", (bytes / weft / 1e9 >= 1.0) ? "met" : "MISSED"
}'
rm -f "$FILE"
echo

# The median of the values of `key` in the files given.
median_of() {
    local key=$1
    shift
    grep -h "^$key=" "$@" | cut -d= -f2 | sort -n | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "== ${SMALL_COUNT} small blobs of 1 KiB, ${SMALL_RUNS} runs, alternating with the file-system baseline"
# Every run gets a new directory and nothing is deleted until the end: ext4 without a journal
# creates files more slowly for about 30 s after many deletes, so wait that long first too.
sleep "${SETTLE_SECS:-35}"
for run in $(seq "$SMALL_RUNS"); do
    if ((run % 2)); then
        "$BENCH" fs-baseline "$WORK/fs-$run" "$SMALL_COUNT" 1024 | tee "$WORK/fs-$run.out"
        "$BENCH" small "$WORK/small-$run" "$SMALL_COUNT" 1024 2 | tee "$WORK/small-$run.out"
    else
        "$BENCH" small "$WORK/small-$run" "$SMALL_COUNT" 1024 2 | tee "$WORK/small-$run.out"
        "$BENCH" fs-baseline "$WORK/fs-$run" "$SMALL_COUNT" 1024 | tee "$WORK/fs-$run.out"
    fi
done
fs=$(median_of fs_baseline_creates_per_s "$WORK"/fs-*.out)
puts=$(median_of small_puts_per_s "$WORK"/small-*.out)
echo
echo "median of ${SMALL_RUNS} runs:"
echo "  file system alone (create+write+rename): $fs files/s"
echo "  weft puts:            $puts/s  ($(awk -v a="$puts" -v b="$fs" 'BEGIN { printf "%.2f", a / b }') x the file system)"
echo "  weft puts, 2 threads: $(median_of small_parallel_puts_per_s "$WORK"/small-*.out)/s"
echo "  weft puts, present:   $(median_of small_dedup_puts_per_s "$WORK"/small-*.out)/s"
echo "  weft gets:            $(median_of small_gets_per_s "$WORK"/small-*.out)/s"
echo "  weft verified gets:   $(median_of small_verified_gets_per_s "$WORK"/small-*.out)/s"
echo "  weft has:             $(median_of small_has_per_s "$WORK"/small-*.out)/s"
echo "  goal >= 50000 puts/s (one thread): $(awk -v p="$puts" 'BEGIN { print (p >= 50000) ? "met" : "MISSED" }')"
echo

echo "== action cache, ${SMALL_COUNT} entries, ${SMALL_RUNS} runs"
for run in $(seq "$SMALL_RUNS"); do
    "$BENCH" actions "$WORK/actions-$run" "$SMALL_COUNT" | tee "$WORK/actions-$run.out"
done
echo
echo "median of ${SMALL_RUNS} runs:"
echo "  action puts:   $(median_of action_puts_per_s "$WORK"/actions-*.out)/s"
echo "  action gets:   $(median_of action_gets_per_s "$WORK"/actions-*.out)/s (hits; each checks 5 blobs)"
echo "  action misses: $(median_of action_misses_per_s "$WORK"/actions-*.out)/s"
