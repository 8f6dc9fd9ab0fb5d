#!/usr/bin/env bash
# Mesh benchmarks (issue 4, section 9; blob transfer is bench/transfer.sh), side by side in one
# run. Every mesh is real `weft daemon` processes on loopback, each with its own home under a
# scratch directory, one team for all, joined by static peers (`--no-mdns --peer ...`), started
# fresh for each measurement (the latency figures of `weft status` are percentiles of the
# daemon's samples since it started) and stopped afterwards (also on error or ^C: trap EXIT).
# Workspaces come from bench/gen_mesh.py; each run gets a new salt, so every job id is new.
#
#   1. hits   Peer cache-hit latency per small action, p50 and p99 (goal: p50 <= 2 ms, p99 <= 10
#             ms). Two nodes with `--share never` (neither runs the other's jobs). Node A builds a
#             workspace of `cat` jobs (no process, one small output each); after its `Have`
#             announcements have gone out, node B builds a copy of the same workspace, and every
#             job must be a `CacheHit` from A. The figures are B's `weft status` line "peer hits
#             X ms (p50), Y ms (p99) from query to checked answer" (measured in B's engine from
#             sending the `CacheQuery` to accepting the signed answer, and for a job whose
#             outputs are wanted, after fetching its output tree too). Four variants:
#               fan/gather  HIT_JOBS independent jobs; B builds only `//:gather`, which depends
#                           on all of them: HIT_JOBS concurrent lookups, no output fetched
#               fan/all     the same; B builds `//...`: each hit also fetches its outputs
#               chain/last  a chain of HIT_CHAIN jobs; B builds only the last one: one lookup
#                           at a time (a job is looked up when its dep is done), nothing queued
#               chain/all   the same chain, B builds `//...`
#             Also reported: B's build time, and for the chains that time per link.
#   2. dist   Distribution efficiency: 4 nodes with `-j 2` and `--share always`; node 1 builds
#             DIST_JOBS independent `sleep DIST_SECS` jobs plus a DIST_CHAIN-job chain (each
#             `sleep DIST_SECS`). Lower bound = max(critical path, total work / total slots),
#             from the nominal sleep. Goal: makespan <= 1.10 x lower bound. The same workload on
#             one node with `-j 2` and no team shows the speedup. Makespan = the build's
#             `Done.duration_ms` (from the daemon taking the request to the build's end); median
#             of RUNS runs, each with new job ids, on the same daemons.
#   3. steal  Steal latency: from a job becoming ready on a busy node to its start on an idle
#             peer (goal: p50 <= 20 ms). Origin O (`-j 1`) and thief T (`-j 1`), both
#             `--share always`. O first builds a workspace with one long job (`sleep`, killed
#             when the measurement ends), so its only slot is busy; then O builds a chain of
#             STEAL_CHAIN short jobs (`bash` writes $EPOCHREALTIME, then `sleep STEAL_SECS`).
#             Each link becomes ready on O when the previous one is done, is queued there (no
#             free slot), and T takes it. Measured:
#               ready -> lent   O's `weft status` "stealing jobs waited X ms (p50), Y ms (p99)":
#                               from the job entering O's ready queue to O granting it to T
#                               (includes O's load beacon going out by gossip, T's steal
#                               request and O's answer; not the grant's trip back)
#               lent -> start   per link: O's debug log line "lent jobs" to the wall clock
#                               the job's process wrote as it started on T; split at T's debug
#                               log line "running a stolen job" into grant arrival and
#                               sandbox + process start
#               link cycle      process start of link k-1 to that of link k, minus the sleep:
#                               everything between two links (T ending the job, storing and
#                               reporting it, O fetching its outputs, then ready -> start)
#             The daemons run with WEFT_LOG=info,weft_node=debug (STEAL_LOG) for this part
#             only.
#
# Usage: bench/mesh.sh             (from anywhere; builds target/release/weft first and runs a
#                                   private copy of it, so a rebuild meanwhile changes nothing)
# Takes about 5 minutes on a 2-core machine, most of it the one-node `sleep` builds (3 x 53 s).
# Knobs: RUNS        runs of each measurement (default 3)
#        PARTS       which benchmarks (default "hits dist steal")
#        HIT_JOBS    jobs in the fan of part 1 (default 500)
#        HIT_CHAIN   jobs in the chain of part 1 (default 200)
#        DIST_JOBS   independent jobs in part 2 (default 400)
#        DIST_CHAIN  chain length in part 2 (default 10)
#        DIST_SECS   each job's sleep in part 2 (default 0.25)
#        SOLO=0      skip the one-node runs of part 2
#        STEAL_CHAIN links in part 3 (default 50)
#        STEAL_SECS  each link's sleep in part 3 (default 0.1)
#        STEAL_LOG   WEFT_LOG of the daemons of part 3 (default info,weft_node=debug; without
#                    weft_node's debug lines only the ready -> lent figure is measured)
#        KEEP=1      keep the scratch directory (daemon logs, events; printed at the end)
#        WEFT_BIN    a weft binary to measure instead of building target/release/weft
# Needs bash, python3, and sh, sleep, bash on PATH (the jobs run them). Record the results in
# bench/RESULTS.md.
set -euo pipefail

if [[ -n ${WEFT_BIN:-} ]]; then
    WEFT_BIN=$(realpath "$WEFT_BIN")
fi
cd "$(dirname "$0")/.."
REPO=$PWD

RUNS=${RUNS:-3}
PARTS=${PARTS:-"hits dist steal"}
HIT_JOBS=${HIT_JOBS:-500}
HIT_CHAIN=${HIT_CHAIN:-200}
DIST_JOBS=${DIST_JOBS:-400}
DIST_CHAIN=${DIST_CHAIN:-10}
DIST_SECS=${DIST_SECS:-0.25}
SOLO=${SOLO:-1}
STEAL_CHAIN=${STEAL_CHAIN:-50}
STEAL_SECS=${STEAL_SECS:-0.1}
STEAL_LOG=${STEAL_LOG:-info,weft_node=debug}
KEEP=${KEEP:-0}

# Short paths: a daemon's socket path must fit in 107 bytes.
WORK=$(mktemp -d /tmp/wmesh.XXXXXX)
DAEMONS=$WORK/daemons # "pid home" of every daemon this script started
: >"$DAEMONS"

cleanup() {
    local status=$?
    set +e
    while read -r pid home; do
        stop_daemon "$pid" "$home"
    done <"$DAEMONS"
    if [[ $KEEP == 1 || $status != 0 ]]; then
        echo "# scratch directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops one daemon we started: `weft shutdown`, then SIGKILL after 10 s.
stop_daemon() {
    local pid=$1 home=$2
    kill -0 "$pid" 2>/dev/null || return 0
    "$BIN" --home "$home" shutdown >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "# daemon $pid ($home) did not stop: SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

if [[ -z ${WEFT_BIN:-} ]]; then
    cargo build --quiet --release -p weft-cli
    WEFT_BIN=$REPO/target/release/weft
fi
BIN=$WORK/weft
cp "$WEFT_BIN" "$BIN"
GEN=$REPO/bench/gen_mesh.py

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "# $(date -u)  $(nproc) cores  load: $(load)  runs=$RUNS  parts: $PARTS"
echo "# weft: $WEFT_BIN ($(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "?"))"

TOKEN=$("$BIN" --home "$WORK/team" team create | sed -n 's/^ *weft team join //p')
[[ -n $TOKEN ]] || { echo "weft team create printed no token" >&2; exit 1; }

# N UDP ports on 127.0.0.1 that were free a moment ago.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# How many peers the daemon of home $1 has admitted.
admitted() {
    "$BIN" --home "$1" peers 2>/dev/null | grep -c '^ *admission admitted$' || true
}

# mesh_start DIR SHARE LOG SLOTS...: one daemon per SLOTS entry, homes DIR/n1, DIR/n2, ...,
# each dialing all others; waits until each has admitted all others. Sets HOMES and PIDS.
mesh_start() {
    local dir=$1 share=$2 log=$3
    shift 3
    local slots=("$@") n=$#
    local ports
    read -ra ports <<<"$(free_ports "$n")"
    HOMES=()
    PIDS=()
    local i j
    for ((i = 0; i < n; i++)); do
        HOMES+=("$dir/n$((i + 1))")
        mkdir -p "${HOMES[i]}"
        "$BIN" --home "${HOMES[i]}" team join "$TOKEN" >/dev/null
        # The benchmark's jobs run `sh`, which daemons do not run for peers by default.
        echo 'accept_tools = ["sh"]' >"${HOMES[i]}/config.toml"
    done
    for ((i = 0; i < n; i++)); do
        local args=(--home "${HOMES[i]}" --max-idle-secs 900 daemon --no-mdns --share "$share"
            -j "${slots[i]}" --listen "/ip4/127.0.0.1/udp/${ports[i]}/quic-v1")
        for ((j = 0; j < n; j++)); do
            ((j == i)) || args+=(--peer "/ip4/127.0.0.1/udp/${ports[j]}/quic-v1")
        done
        # An empty WEFT_LOG would silence the daemon; unset, it logs at `info`.
        if [[ -n $log ]]; then
            WEFT_LOG=$log "$BIN" "${args[@]}" </dev/null >"${HOMES[i]}/daemon.log" 2>&1 &
        else
            env -u WEFT_LOG "$BIN" "${args[@]}" </dev/null >"${HOMES[i]}/daemon.log" 2>&1 &
        fi
        PIDS+=($!)
        echo "$! ${HOMES[i]}" >>"$DAEMONS"
    done
    local deadline=$((SECONDS + 60))
    for ((i = 0; i < n; i++)); do
        while (($(admitted "${HOMES[i]}") < n - 1)); do
            if ((SECONDS > deadline)) || ! kill -0 "${PIDS[i]}" 2>/dev/null; then
                echo "the mesh in $dir did not form; see ${HOMES[i]}/daemon.log" >&2
                tail -5 "${HOMES[i]}/daemon.log" >&2
                exit 1
            fi
            sleep 0.1
        done
    done
}

# A lone daemon with no team (no mesh): solo_start HOME SLOTS. Sets HOMES and PIDS.
solo_start() {
    mkdir -p "$1"
    env -u WEFT_LOG "$BIN" --home "$1" --max-idle-secs 900 daemon -j "$2" </dev/null \
        >"$1/daemon.log" 2>&1 &
    HOMES=("$1")
    PIDS=($!)
    echo "$! $1" >>"$DAEMONS"
    local deadline=$((SECONDS + 30))
    until "$BIN" --home "$1" status >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "the daemon in $1 did not start" >&2; exit 1; }
        sleep 0.1
    done
}

mesh_stop() {
    local i
    for i in "${!PIDS[@]}"; do
        stop_daemon "${PIDS[i]}" "${HOMES[i]}"
    done
}

# build HOME WS EVENTS [TARGETS...]: `weft build` through the daemon of HOME; fails loudly.
build() {
    local home=$1 ws=$2 events=$3
    shift 3
    # In the background, so that ^C or a TERM reaches the EXIT trap at once (bash runs a trap
    # only after the foreground command ends, but interrupts `wait`).
    "$BIN" --home "$home" -C "$ws" build --events "$events" "$@" >"$events.out" 2>&1 &
    if ! wait $!; then
        echo "the build of $ws through $home failed:" >&2
        tail -20 "$events.out" >&2
        exit 1
    fi
}

# The two numbers of a `weft status` percentile line: pctl HOME "peer hits" -> "P50 P99".
pctl() {
    "$BIN" --home "$1" status | sed -n "s/.*$2.* \([0-9.]*\) ms (p50), \([0-9.]*\) ms (p99).*/\1 \2/p"
}

# A `weft status` counter: count HOME LABEL, e.g. count H "leases requeued".
count() {
    "$BIN" --home "$1" status | python3 -c '
import re, sys
label = sys.argv[1]
for line in sys.stdin:
    m = re.search(r"(\d+) " + re.escape(label), line)
    if m:
        print(m.group(1)); break
else:
    print("?")' "$2"
}

# Facts about an events file, as "key=value" words.
events_summary() {
    python3 - "$1" <<'EOF'
import json, sys
started, peer_hits, local_hits, done, fin_ms = {}, 0, 0, {}, 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if "Started" in e:
        node = e["Started"]["node"][:8]
        started[node] = started.get(node, 0) + 1
    elif "CacheHit" in e:
        if isinstance(e["CacheHit"]["source"], dict) and "Peer" in e["CacheHit"]["source"]:
            peer_hits += 1
        else:
            local_hits += 1
    elif "Finished" in e:
        fin_ms += e["Finished"].get("duration_ms", 0)
    elif "Done" in e:
        done = e["Done"]
per_node = ",".join(f"{n}:{c}" for n, c in sorted(started.items(), key=lambda x: -x[1]))
print(f"ms={done.get('duration_ms')} ok={done.get('success')} ran={done.get('n_ran')} "
      f"cached={done.get('n_cached')} failed={done.get('n_failed')} peer_hits={peer_hits} "
      f"local_hits={local_hits} started={sum(started.values())} per_node={per_node or '-'} "
      f"finished_ms={fin_ms}")
EOF
}

RESULTS=$WORK/results # one line per measurement, key=value words
: >"$RESULTS"

# ---- 1. peer cache-hit latency ------------------------------------------------------------
part_hits() {
    echo
    echo "## 1. peer cache-hit latency (2 nodes, --share never, fresh daemons per measurement; load $(load))"
    local variant kind n targets r dir salt s p
    for variant in fan/gather fan/all chain/last chain/all; do
        kind=${variant%/*}
        if [[ $kind == fan ]]; then n=$HIT_JOBS; else n=$HIT_CHAIN; fi
        for r in $(seq "$RUNS"); do
            dir=$WORK/hits-${variant/\//-}-$r
            salt="hits-$variant-$r-$$-$RANDOM"
            python3 "$GEN" "$kind" "$dir/wa" "$salt" "$n"
            python3 "$GEN" "$kind" "$dir/wb" "$salt" "$n"
            case $variant in
                fan/gather) targets=(//:gather) ;;
                chain/last) targets=("//:c$((n - 1))") ;;
                *) targets=(//...) ;;
            esac
            mesh_start "$dir" never "" 2 2
            build "${HOMES[0]}" "$dir/wa" "$dir/a.jsonl" //...
            # A announces what it holds within 50 ms (have_delay); give gossip a margin.
            sleep 1.5
            build "${HOMES[1]}" "$dir/wb" "$dir/b.jsonl" "${targets[@]}"
            read -r p50 p99 <<<"$(pctl "${HOMES[1]}" "peer hits")"
            s=$(events_summary "$dir/b.jsonl")
            p="part=hits variant=$variant run=$r n=$n p50=${p50:-?} p99=${p99:-?} load=$(load | tr ' ' /)"
            p+=" peer_cache=$(count "${HOMES[1]}" "results from peers' caches") $s"
            p+=" $(events_summary "$dir/a.jsonl" | cut -d' ' -f1-3 | sed 's/\([a-z]*\)=/a_\1=/g')"
            echo "$p" | tee -a "$RESULTS"
            mesh_stop
        done
    done
}

# ---- 2. distribution efficiency ------------------------------------------------------------
# dist_runs LABEL NODES SLOTS HOME: RUNS builds of new sleep workspaces through HOME.
dist_runs() {
    local r ws salt t0 t1 dir=$WORK/dist
    for r in $(seq "$RUNS"); do
        salt="dist-$1-$r-$$-$RANDOM"
        ws=$dir/$1-ws$r
        python3 "$GEN" sleeps "$ws" "$salt" "$DIST_JOBS" "$DIST_CHAIN" "$DIST_SECS"
        t0=$(date +%s.%N)
        build "$4" "$ws" "$dir/$1-$r.jsonl" //...
        t1=$(date +%s.%N)
        echo "part=dist mode=$1 nodes=$2 slots=$3 run=$r wall_s=$(awk "BEGIN{print $t1 - $t0}")" \
            "load=$(load | tr ' ' /) $(events_summary "$dir/$1-$r.jsonl")" | tee -a "$RESULTS"
    done
}

part_dist() {
    echo
    echo "## 2. distribution efficiency ($DIST_JOBS x sleep $DIST_SECS + a $DIST_CHAIN-job chain; load $(load))"
    mkdir -p "$WORK/dist"
    mesh_start "$WORK/dist/mesh" always "" 2 2 2 2
    dist_runs mesh4 4 8 "${HOMES[0]}"
    echo "# origin's status: $("$BIN" --home "${HOMES[0]}" status | grep -E 'jobs .* lent|stealing' |
        tr -s ' ' | tr '\n' ';')"
    mesh_stop
    if [[ $SOLO == 1 ]]; then
        solo_start "$WORK/dist/solo" 2
        dist_runs solo1 1 2 "${HOMES[0]}"
        mesh_stop
    fi
}

# ---- 3. steal latency ----------------------------------------------------------------------
part_steal() {
    echo
    echo "## 3. steal latency (origin -j 1 busy with a long job, thief -j 1; a $STEAL_CHAIN-link chain of sleep $STEAL_SECS; load $(load))"
    local r dir salt long_pid p50 p99
    for r in $(seq "$RUNS"); do
        dir=$WORK/steal-$r
        salt="steal-$r-$$-$RANDOM"
        python3 "$GEN" long "$dir/long" "$salt" 600
        python3 "$GEN" stamps "$dir/chain" "$salt" "$STEAL_CHAIN" "$STEAL_SECS"
        mesh_start "$dir" always "$STEAL_LOG" 1 1
        # Occupy the origin's only slot. The build is cancelled when its client goes away.
        "$BIN" --home "${HOMES[0]}" -C "$dir/long" build --events "$dir/long.jsonl" \
            >"$dir/long.out" 2>&1 &
        long_pid=$!
        local deadline=$((SECONDS + 30))
        until grep -q '"Started"' "$dir/long.jsonl" 2>/dev/null; do
            ((SECONDS < deadline)) || { echo "the long job did not start" >&2; exit 1; }
            sleep 0.05
        done
        build "${HOMES[0]}" "$dir/chain" "$dir/chain.jsonl" //...
        read -r p50 p99 <<<"$(pctl "${HOMES[0]}" "stealing")"
        kill "$long_pid" 2>/dev/null || true
        wait "$long_pid" 2>/dev/null || true
        echo "part=steal run=$r n=$STEAL_CHAIN wait_p50=${p50:-?} wait_p99=${p99:-?} load=$(load | tr ' ' /)" \
            "lent=$(count "${HOMES[0]}" "lent") taken=$(count "${HOMES[1]}" "taken")" \
            "$(events_summary "$dir/chain.jsonl")" | tee -a "$RESULTS"
        python3 - "$dir" "$STEAL_SECS" "$r" <<'EOF' | tee -a "$RESULTS"
# Per link: O's "lent jobs" log time, T's "running a stolen job" log time, the process's own
# $EPOCHREALTIME; the links are lent one at a time, in chain order.
import datetime, os, re, statistics, sys
d, secs, run = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def stamp(line):
    m = re.match(r"\S*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    if not m:
        return None
    text = m.group(1)
    whole, frac = text.split(".")
    t = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + float("0." + frac)
def strip(line):
    return re.sub(r"\x1b\[[0-9;]*m", "", line)
lent = [stamp(strip(l)) for l in open(f"{d}/n1/daemon.log") if "lent jobs" in l]
run_at = {}
for l in open(f"{d}/n2/daemon.log"):
    l = strip(l)
    if "running a stolen job" in l:
        m = re.search(r"name=(\S+)", l)
        if m:
            run_at[m.group(1).strip('"').rsplit(":", 1)[-1]] = stamp(l)
starts = {}
out = f"{d}/chain/weft-out"
for name in os.listdir(out):
    if name.startswith("t"):
        starts[f"s{name[1:]}"] = float(open(os.path.join(out, name)).read())
n = len(starts)
names = [f"s{i}" for i in range(n)]
grant, spawn, total, cycle = [], [], [], []
for i, name in enumerate(names):
    if i < len(lent) and lent[i] and name in run_at:
        grant.append(run_at[name] - lent[i])
        spawn.append(starts[name] - run_at[name])
        total.append(starts[name] - lent[i])
    if i > 0:
        cycle.append(starts[name] - starts[names[i - 1]] - secs)
def q(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)] * 1000 if xs else float("nan")
print(f"part=steal_thief run={run} links={n} lent_lines={len(lent)} thief_lines={len(run_at)} "
      f"grant_p50={q(grant, .5):.1f} grant_p99={q(grant, .99):.1f} "
      f"spawn_p50={q(spawn, .5):.1f} spawn_p99={q(spawn, .99):.1f} "
      f"lent_to_start_p50={q(total, .5):.1f} lent_to_start_p99={q(total, .99):.1f} "
      f"cycle_p50={q(cycle, .5):.1f} cycle_p99={q(cycle, .99):.1f}")
EOF
        mesh_stop
    done
}

for part in $PARTS; do
    case $part in
        hits) part_hits ;;
        dist) part_dist ;;
        steal) part_steal ;;
        *) echo "unknown part \`$part\` (hits, dist, steal)" >&2; exit 1 ;;
    esac
done

echo
echo "# load after: $(load)  $(date -u)"
echo "# warnings and errors in the daemon logs (timestamps and ids elided), by count:"
find "$WORK" -name daemon.log -exec grep -ahE ' (WARN|ERROR) ' {} + |
    sed -E 's/^[^ ]+ +//; s/12D3Koo[A-Za-z0-9]+/<peer>/g; s/\b[0-9a-f]{16,64}\b/<id>/g' |
    sort | uniq -c | sort -rn | sed 's/^/#   /' || true
python3 "$REPO/bench/mesh_report.py" "$RESULTS" "$DIST_JOBS" "$DIST_CHAIN" "$DIST_SECS" |
    tee "$WORK/report.md"
