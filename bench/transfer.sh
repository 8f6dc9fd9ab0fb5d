#!/usr/bin/env bash
# Blob-transfer benchmark (issue 4, section 9), side by side in one run, all on loopback:
#
#   1. iperf3 over TCP (the machine's ceiling for one stream);
#   2. weft's data plane end to end: Mesh::fetch_blob of a SIZE_MIB blob from one node's store
#      into another's (libp2p QUIC stream, blake3, tmp file, rename), and the same with the
#      size known, which takes the bulk lane (TLS 1.3 AES-GCM on TCP), as tree files do;
#   3. a bare libp2p QUIC stream with the mesh's settings, memory to memory;
#   4. a bare quinn 0.11 endpoint pair, memory to memory, with AES-128-GCM and with
#      ChaCha20-Poly1305 (the cipher libp2p's TLS prefers).
#
# Prints every run, then the median of each and its ratio to iperf3 (GB = 10^9 bytes).
# Usage: bench/transfer.sh         (from anywhere; builds the release example first)
# Knobs: SIZE_MIB  bytes per transfer, in MiB (default 1024)
#        RUNS      runs per command (default 5)
#        PORT      iperf3's port on 127.0.0.1 (default 5299)
# Takes about 2 minutes. Record the results in bench/RESULTS.md.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v iperf3 >/dev/null; then
    echo "bench/transfer.sh needs iperf3; install it with: sudo apt-get install -y iperf3" >&2
    exit 1
fi

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-5}
PORT=${PORT:-5299}
SIZE=$((SIZE_MIB * 1024 * 1024))

echo "# $(date -u)  size=${SIZE_MIB} MiB  runs=${RUNS}  load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --quiet --release -p weft-node --example transfer
BIN=target/release/examples/transfer

results=$(mktemp)
trap 'rm -f "$results"; [[ -n "${IPERF_PID:-}" ]] && kill "$IPERF_PID" 2>/dev/null || true' EXIT

iperf3 -s -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5
for _ in $(seq "$RUNS"); do
    iperf3 -c 127.0.0.1 -p "$PORT" -n "$SIZE" -J |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["end"]["sum_received"]
b, s, bps = int(r["bytes"]), r["seconds"], r["bits_per_second"]
print(f"mode=iperf3-tcp bytes={b} secs={s:.3f} gbytes_per_sec={bps/8e9:.3f}")' |
        tee -a "$results"
done
kill "$IPERF_PID"
IPERF_PID=

"$BIN" blob --size "$SIZE" --runs "$RUNS" | tee -a "$results"
"$BIN" bulk --size "$SIZE" --runs "$RUNS" | tee -a "$results"
"$BIN" libp2p --size "$SIZE" --runs "$RUNS" | tee -a "$results"
"$BIN" quinn --cipher aes --size "$SIZE" --runs "$RUNS" | tee -a "$results"
"$BIN" quinn --cipher chacha --size "$SIZE" --runs "$RUNS" | tee -a "$results"

echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'EOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.search(r"mode=(\S+) .* gbytes_per_sec=([0-9.]+)", line)
    if m:
        runs.setdefault(m.group(1), []).append(float(m.group(2)))
base = statistics.median(runs["iperf3-tcp"])
print(f"{'mode':<14} {'median GB/s':>11} {'min':>6} {'max':>6} {'÷ iperf3':>9}")
for mode, values in runs.items():
    med = statistics.median(values)
    print(f"{mode:<14} {med:>11.3f} {min(values):>6.3f} {max(values):>6.3f} {med / base:>9.2f}")
EOF
