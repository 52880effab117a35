#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) and prints what each
# found: executions, coverage, and the reproducer of any crash, hang or OOM.
#   scripts/fuzz.sh [SECONDS]
# FUZZ_SANITIZER=address for AddressSanitizer (about half the speed; Seawall has no
# unsafe code, so the default is none). FUZZ_TARGETS="headers contract" for a subset.
# Exits non-zero when a target found something. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"

# Building cargo-fuzz takes about a minute once; it stays in ~/.cargo/bin.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly-only flags (-Zsanitizer, sancov passes); a stable toolchain
# accepts them when told it may.
export RUSTC_BOOTSTRAP=1

targets="${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
echo "== building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer"

mkdir -p fuzz/logs
found=()
for target in $targets; do
    corpus="fuzz/corpus/$target"
    log="fuzz/logs/$target.log"
    mkdir -p "$corpus"
    seeds=()
    [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
    echo "== $target: ${seconds}s (log: $log)"
    # New inputs go to the first directory (git-ignored); the seeds are only read.
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: past 2 GiB is an OOM.
    status=0
    cargo fuzz run -s "$sanitizer" "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
    grep -E '^stat::number_of_executed_units' "$log" || true
    if [ "$status" -ne 0 ]; then
        found+=("$target")
        grep -E 'ERROR: libFuzzer|panicked at|^SUMMARY|Test unit written to' "$log" || tail -20 "$log"
    fi
done

if [ "${#found[@]}" -gt 0 ]; then
    echo "== FOUND something in: ${found[*]}"
    echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer TARGET fuzz/artifacts/TARGET/FILE"
    exit 1
fi
echo "== nothing found in: $targets"
