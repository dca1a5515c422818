#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for SECONDS_PER_TARGET (default 600), one after the
# other; fails when one crashes, times out (an input that takes over 10 s) or runs out of
# memory, naming the artifact that reproduces it. Not run by CI or scripts/test.sh: see
# docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs the nightly toolchain (cargo +nightly); installs cargo-fuzz when missing. The seeds in
# fuzz/corpus/<target>/ are only read; what the fuzzer finds goes to fuzz/corpus-work/<target>/,
# logs to $FUZZ_LOG_DIR (default fuzz/logs/), crashes to fuzz/artifacts/<target>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

secs="${1:-600}"
[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || die "SECONDS_PER_TARGET must be a positive number, got $secs"
shift $(($# > 0 ? 1 : 0))

cargo +nightly --version >/dev/null 2>&1 \
  || die "cargo +nightly is missing: rustup toolchain install nightly"
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd "$ROOT/fuzz"
# The fuzz workspace has its own target dir: nightly artifacts never mix with the stable build.
unset CARGO_TARGET_DIR CARGO_BUILD_BUILD_DIR
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
log_dir="${FUZZ_LOG_DIR:-$ROOT/fuzz/logs}"
mkdir -p "$log_dir"

# No sanitizer: every cambot crate forbids unsafe code, and ASan would halve the executions
# per second; debug assertions and overflow checks stay on (cargo fuzz's default).
log "building ${#targets[@]} fuzz targets"
if [ ${#targets[@]} -eq 1 ]; then
  cargo +nightly fuzz build -s none "${targets[0]}"
else
  cargo +nightly fuzz build -s none
fi

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "corpus/$t"
  log "fuzzing $t for ${secs}s (log: $log_dir/$t.log)"
  start=$(date +%s)
  if cargo +nightly fuzz run -s none "$t" "corpus-work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log_dir/$t.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_dir/$t.log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log_dir/$t.log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    echo "ok   $t: ${runs:-?} runs, cov ${cov:-?}, ft ${ft:-?}, $(( $(date +%s) - start ))s"
  else
    failed+=("$t")
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log_dir/$t.log" | tail -1)
    echo "FAIL $t: $(grep -m1 -E 'panicked at|ERROR: libFuzzer' "$log_dir/$t.log" || echo 'see the log')"
    echo "     artifact: ${artifact:-none written} (replay: cd fuzz && cargo +nightly fuzz run -s none $t ${artifact:-<artifact>})"
    echo "     log: $log_dir/$t.log"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  die "fuzz targets failed: ${failed[*]}"
fi
log "all ${#targets[@]} fuzz targets ran ${secs}s each without a crash"
