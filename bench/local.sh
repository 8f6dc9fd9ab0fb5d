#!/usr/bin/env bash
# Local-build benchmarks (issue 3, section 7), weft measured side by side with its peers in
# one run, everything generated into a scratch directory:
#
#   1. 10,000 jobs, each with one input file, in two variants (bench/gen_jobs.py):
#        cat  : 10,000 weft `cat` jobs (no process)  vs ninja `printf ... > $out`
#        exec : 10,000 `exec(["cp", IN, OUT])` jobs   vs ninja `cp $in $out`
#      a. clean build, against `ninja -j2` (prepare: rm outputs, .ninja_log, .ninja_deps).
#         weft is measured twice (both `-j 2`, sandbox on, as shipped):
#           - "weft, warm daemon": prepare stops the daemon, deletes its whole home (store,
#             action cache, log) and `weft-out/`, then starts a fresh daemon with `weft info`.
#             The timed `weft build` therefore finds a running daemon with an empty store
#             and nothing cached in memory: it evaluates every BUILD file, hashes every
#             source into the store, lowers, runs all jobs and publishes `weft-out/`. This is
#             the figure compared with ninja (which also parses its manifest each time).
#           - "weft, cold daemon": the same, but no daemon runs: the timed command also starts
#             the daemon.
#         Reported as jobs/s and as the throughput ratio weft/ninja = ninja time / weft time
#         (goal >= 0.8).
#      b. no-op rebuild: `weft build` with the daemon warm (it built this tree just before)
#         vs `ninja -j2` with nothing to do (goal: weft time / ninja time <= 1).
#      c. cached rebuild: prepare `weft clean` (removes `weft-out/`, keeps the store), then
#         `weft build` with the daemon warm: every job is an action-cache hit and its outputs
#         are materialized again (goal <= 2 s).
#      d. RSS of the daemon (/proc/<pid>/status of the pid in `$home/daemon.pid`):
#           - idle after startup: fresh home, `weft info`, 2 s pause, VmRSS (goal <= 30 MiB);
#             also after a build of an empty workspace;
#           - peak during the 10k clean build: VmHWM of the daemon that did the last timed
#             "warm daemon" clean build (it started just before that build and did nothing
#             else), goal <= 300 MiB; plus its VmRSS 5 s after the build.
#   2. A real C code base (bench/gen_c.py): a 200-file library plus a binary, as a weft
#      workspace (cc_library + cc_binary) and as a Makefile (same `cc -O2 -Wall`, same
#      include paths):
#      a. clean build: `make -j2` (prepare `make clean`) vs weft, warm daemon with an empty
#         store (prepared as in 1a);
#      b. cached build: `make -j2 CC="ccache cc"` after `make clean` with a warm ccache
#         (private CCACHE_DIR, warmed by the warm-up runs) vs `weft build` after `weft clean`
#         (every result from weft's store).
#      Both binaries are run and must print the same checksum.
#
# Every comparison is run by hyperfine in interleaved rounds: round 1 does the warm-up runs,
# then each round times every command once (no-op builds: several times) in turn, so a burst of
# load from other processes on a shared machine hits all commands alike instead of whichever
# one hyperfine happened to be running. The runs of all rounds are merged; the figures are
# medians, and ratios of medians. The daemon log of every weft build is kept,
# and its phase timings (load, lower, execute, publish) are summarized per benchmark.
# The report (markdown tables, goals met or missed) is printed at the end and written to
# $WORK/report.md (kept with KEEP=1).
#
# Usage: bench/local.sh            (from anywhere; builds target/release/weft first)
# Takes about 15 minutes on a busy 2-core machine, most of it the 10k `exec` clean builds.
# Knobs: TMPDIR      where the scratch directory goes
#        RUNS        measured runs of each clean and cached build (default 5; also the
#                    number of interleaved rounds of the clean and C comparisons)
#        NOOP_RUNS   measured runs of each no-op build (default 20, in 5 rounds)
#        N_JOBS      jobs in the job benchmarks (default 10000)
#        C_FILES     library files in the C benchmark (default 200)
#        PARTS       which benchmarks to run (default "cat exec c": the 10k cat jobs, the 10k
#                    exec jobs, the C code base); the idle RSS is always measured
#        KEEP=1      keep the scratch directory (printed at the end)
#        WEFT_BIN    a weft binary to measure instead of building target/release/weft
#                    (say, one built from a pinned commit while the tree is being edited)
# Record the results in bench/RESULTS.md.
set -euo pipefail

if [[ -n ${WEFT_BIN:-} ]]; then
    WEFT_BIN=$(realpath "$WEFT_BIN")
fi
cd "$(dirname "$0")/.."
REPO=$PWD

missing=()
for tool in hyperfine ninja make ccache cc ar python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "bench/local.sh needs: ${missing[*]}" >&2
    echo "install them with:   sudo apt-get install -y hyperfine ninja-build make ccache gcc binutils python3" >&2
    exit 1
fi

RUNS=${RUNS:-5}
NOOP_RUNS=${NOOP_RUNS:-20}
N_JOBS=${N_JOBS:-10000}
C_FILES=${C_FILES:-200}
KEEP=${KEEP:-0}
PARTS=${PARTS:-cat exec c}

if [[ -n ${WEFT_BIN:-} ]]; then
    [[ -x $WEFT_BIN ]] || { echo "WEFT_BIN=$WEFT_BIN is not an executable" >&2; exit 1; }
else
    command -v cargo >/dev/null || { echo "bench/local.sh needs cargo (or WEFT_BIN)" >&2; exit 1; }
    cargo build --release -p weft-cli
    WEFT_BIN=target/release/weft
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/weft-local-bench.XXXXXX")
RES=$WORK/results
LOGS=$RES/logs
mkdir -p "$WORK/bin" "$RES" "$LOGS"
# A private copy: another `cargo build` during the run must not replace the daemon (the
# daemon's identity is the binary's size and mtime).
cp "$WEFT_BIN" "$WORK/bin/weft"
W=$WORK/bin/weft

cleanup() {
    for home in "$WORK"/home-*; do
        [[ -d $home ]] && "$W" --home "$home" shutdown >/dev/null 2>&1 || true
    done
    if [[ $KEEP == 1 ]]; then
        echo "scratch directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*"; }
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU pressure (PSI): the share of the last 60 s in which some runnable task waited for a CPU.
cpu_psi() { awk '/^some/ { sub("avg60=", "", $3); print $3 "%" }' /proc/pressure/cpu 2>/dev/null || echo "n/a"; }
note_load() {
    echo "$1 $(load_avg) cpu-wait-60s=$(cpu_psi)" >>"$RES/load.txt"
    echo "load average: $(load_avg); cpu pressure (avg60): $(cpu_psi)"
}
# status_kib HOME FIELD: a field of the daemon's /proc status, in KiB.
status_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$(cat "$1/daemon.pid")/status"
}
# A fresh daemon for HOME: stop it, save its log to LOGFILE, delete the home, start again.
# Echoed as a shell command for hyperfine's --prepare.
fresh_daemon_cmd() {
    local home=$1 logfile=$2 ws=$3 start=$4
    local cmd="'$W' --home '$home' shutdown >/dev/null 2>&1 || true; "
    cmd+="cat '$home/daemon.log' >>'$logfile' 2>/dev/null || true; "
    cmd+="rm -rf '$home' '$ws/weft-out'"
    [[ $start == start ]] && cmd+="; '$W' --home '$home' info >/dev/null"
    echo "$cmd"
}
# compare NAME ROUNDS RUNS_PER_ROUND WARMUP HYPERFINE_ARGS...: interleaved hyperfine rounds,
# exported to $RES/NAME.r<round>.json (merged by bench/local_report.py).
compare() {
    local name=$1 rounds=$2 runs=$3 warmup=$4 r w
    shift 4
    for ((r = 1; r <= rounds; r++)); do
        w=0
        ((r == 1)) && w=$warmup
        echo "-- $name: round $r of $rounds (load average $(load_avg))"
        hyperfine --style basic --warmup "$w" --runs "$runs" \
            --export-json "$RES/$name.r$r.json" "$@"
    done
}
# log_mark HOME: the current line count of the daemon's log.
log_mark() { wc -l <"$1/daemon.log"; }
# log_since HOME MARK OUT: the log lines written after MARK.
log_since() { tail -n +"$(($2 + 1))" "$1/daemon.log" >"$3"; }

{
    echo "date: $(date -u)"
    echo "uname: $(uname -srm)"
    echo "cpus: $(nproc)"
    echo "cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "mem: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "fs: $(df -hT "$WORK" | tail -1 | awk '{ print $1, $2 }')"
    echo "weft: $("$W" --version) ($WEFT_BIN)"
    echo "hyperfine: $(hyperfine --version)"
    echo "ninja: $(ninja --version)"
    echo "make: $(make --version | head -1)"
    echo "cc: $(cc --version | head -1)"
    echo "ccache: $(ccache --version | head -1)"
    echo "runs: RUNS=$RUNS NOOP_RUNS=$NOOP_RUNS N_JOBS=$N_JOBS C_FILES=$C_FILES PARTS=\"$PARTS\""
} | tee "$RES/machine.txt"
note_load start

# ---------------------------------------------------------------------------------------
log "daemon idle RSS after startup"
EMPTY=$WORK/empty
mkdir -p "$EMPTY"
printf '[packages]\n' >"$EMPTY/weft.toml"
H=$WORK/home-idle
"$W" --home "$H" -C "$EMPTY" info >/dev/null
sleep 2
echo "idle_after_start_kib=$(status_kib "$H" VmRSS)" >"$RES/idle-rss.txt"
"$W" --home "$H" -C "$EMPTY" build >/dev/null 2>&1
sleep 2
echo "idle_after_empty_build_kib=$(status_kib "$H" VmRSS)" >>"$RES/idle-rss.txt"
echo "idle_after_empty_build_hwm_kib=$(status_kib "$H" VmHWM)" >>"$RES/idle-rss.txt"
"$W" --home "$H" shutdown >/dev/null
cat "$RES/idle-rss.txt"

# ---------------------------------------------------------------------------------------
for kind in cat exec; do
    [[ " $PARTS " == *" $kind "* ]] || continue
    DIR=$WORK/jobs-$kind
    WS=$DIR/weft
    NJ=$DIR/ninja
    H=$WORK/home-$kind
    HC=$WORK/home-$kind-cold
    log "$N_JOBS $kind jobs: generating"
    python3 "$REPO/bench/gen_jobs.py" "$DIR" "$N_JOBS" "$kind"

    log "$N_JOBS $kind jobs: clean build (ninja -j2, weft cold daemon, weft warm daemon)"
    note_load "jobs-$kind-clean-before"
    rm -rf "$NJ/out" "$NJ/.ninja_log" "$NJ/.ninja_deps"
    compare "jobs-$kind-clean" "$RUNS" 1 1 \
        -n "ninja -j2" \
        --prepare "rm -rf '$NJ/out' '$NJ/.ninja_log' '$NJ/.ninja_deps'" \
        "ninja -C '$NJ' -j2" \
        -n "weft, cold daemon" \
        --prepare "$(fresh_daemon_cmd "$HC" "$LOGS/jobs-$kind-clean-cold.log" "$WS" nostart)" \
        "'$W' --home '$HC' -C '$WS' build -j 2" \
        -n "weft, warm daemon" \
        --prepare "$(fresh_daemon_cmd "$H" "$LOGS/jobs-$kind-clean-warm.log" "$WS" start)" \
        "'$W' --home '$H' -C '$WS' build -j 2"
    note_load "jobs-$kind-clean-after"
    # The daemon of $H did exactly the last timed build since it started.
    {
        echo "peak_kib=$(status_kib "$H" VmHWM)"
        echo "after_build_kib=$(status_kib "$H" VmRSS)"
        sleep 5
        echo "idle_after_build_kib=$(status_kib "$H" VmRSS)"
    } >"$RES/jobs-$kind-rss.txt"
    cat "$RES/jobs-$kind-rss.txt"
    cat "$H/daemon.log" >>"$LOGS/jobs-$kind-clean-warm.log"
    "$W" --home "$HC" shutdown >/dev/null 2>&1 || true
    cat "$HC/daemon.log" >>"$LOGS/jobs-$kind-clean-cold.log" 2>/dev/null || true
    rm -rf "$HC"

    # Both tools made the same files with the same contents.
    n_weft=$(find "$WS/weft-out" -type f | wc -l)
    n_ninja=$(find "$NJ/out" -type f | wc -l)
    echo "outputs: weft $n_weft, ninja $n_ninja"
    if [[ $n_weft != "$N_JOBS" || $n_ninja != "$N_JOBS" ]] || ! diff -rq "$WS/weft-out" "$NJ/out" >/dev/null; then
        echo "error: weft-out/ and ninja's out/ differ" >&2
        exit 1
    fi

    log "$N_JOBS $kind jobs: no-op rebuild (daemon warm)"
    mark=$(log_mark "$H")
    compare "jobs-$kind-noop" 5 "$(((NOOP_RUNS + 4) / 5))" 3 \
        -n "ninja -j2 (no-op)" "ninja -C '$NJ' -j2" \
        -n "weft (no-op, warm daemon)" "'$W' --home '$H' -C '$WS' build -j 2"
    log_since "$H" "$mark" "$LOGS/jobs-$kind-noop.log"

    log "$N_JOBS $kind jobs: cached rebuild after weft clean (daemon warm)"
    mark=$(log_mark "$H")
    compare "jobs-$kind-cached" 1 "$RUNS" 1 \
        -n "weft (after weft clean, warm daemon)" \
        --prepare "'$W' --home '$H' -C '$WS' clean >/dev/null" \
        "'$W' --home '$H' -C '$WS' build -j 2"
    log_since "$H" "$mark" "$LOGS/jobs-$kind-cached.log"
    note_load "jobs-$kind-end"

    "$W" --home "$H" shutdown >/dev/null
    rm -rf "$DIR" "$H"
done

# ---------------------------------------------------------------------------------------
if [[ " $PARTS " == *" c "* ]]; then
    log "C code base ($C_FILES library files + a binary): generating"
    DIR=$WORK/c
    WS=$DIR/weft
    MK=$DIR/make
    H=$WORK/home-c
    export CCACHE_DIR=$WORK/ccache
    python3 "$REPO/bench/gen_c.py" "$DIR" "$C_FILES"

    log "C: clean build (make -j2, weft warm daemon with an empty store)"
    note_load c-clean-before
    make -s -C "$MK" clean
    compare c-clean "$RUNS" 1 1 \
        -n "make -j2" --prepare "make -s -C '$MK' clean" "make -s -C '$MK' -j2" \
        -n "weft, warm daemon" \
        --prepare "$(fresh_daemon_cmd "$H" "$LOGS/c-clean.log" "$WS" start)" \
        "'$W' --home '$H' -C '$WS' build -j 2"
    cat "$H/daemon.log" >>"$LOGS/c-clean.log"
    sum_make=$("$MK/app/app")
    sum_weft=$("$WS/weft-out/app/app")
    echo "make: $sum_make; weft: $sum_weft"
    if [[ $sum_make != "$sum_weft" ]]; then
        echo "error: the two binaries disagree" >&2
        exit 1
    fi

    log "C: cached build (make -j2 with a warm ccache after make clean, weft after weft clean)"
    note_load c-cached-before
    ccache -z >/dev/null
    mark=$(log_mark "$H")
    compare c-cached "$RUNS" 1 2 \
        -n "make -j2 CC=\"ccache cc\" (warm ccache)" --prepare "make -s -C '$MK' clean" \
        "make -s -C '$MK' -j2 CC='ccache cc'" \
        -n "weft (after weft clean, warm daemon)" \
        --prepare "'$W' --home '$H' -C '$WS' clean >/dev/null" \
        "'$W' --home '$H' -C '$WS' build -j 2"
    log_since "$H" "$mark" "$LOGS/c-cached.log"
    ccache -s | tee "$RES/ccache-stats.txt"
    "$W" --home "$H" shutdown >/dev/null
fi

note_load end
echo "date_end: $(date -u)" >>"$RES/machine.txt"
log "report"
python3 "$REPO/bench/local_report.py" "$RES" "$N_JOBS" "$C_FILES" | tee "$WORK/report.md"
