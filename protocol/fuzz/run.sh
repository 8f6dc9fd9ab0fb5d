#!/usr/bin/env bash
# Runs every fuzz target for a while on the stable toolchain.
#
#   protocol/fuzz/run.sh [SECONDS_PER_TARGET]   (default 60)
#
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 unlocks them on stable. The malloc
# limit makes any single allocation above 17 MiB (the 16 MiB frame limit plus slack) a crash.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in frame message label tree; do
    echo "== fuzz target $target, ${secs}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=17 2>&1 | grep -E '^Done|ERROR|SUMMARY'
done
