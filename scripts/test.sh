#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian/Ubuntu machine (as root) and runs it:
# format check, clippy, the boundary checks and every test of the workspace, with the real
# sandboxes (bubblewrap always; Docker when dockerd starts), the real local model and a real
# headless Chromium. Prints which suites ran and which were skipped, and fails on zero tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
cd "$ROOT"
ensure_rust
# Tests that need a tool installed below (bwrap, dockerd, llama-server, chromium) fail instead of
# skipping when it is missing: a green run means every suite really ran.
export CAMBOT_REQUIRE_ALL=1

# Per-area setup fragments (sandbox tools and dockerd, the local model, the cron oracle, the
# browser...). Each is idempotent and may export variables into this shell.
STOPS=()
for f in scripts/setup/*.sh; do
  case "$f" in *-stop.sh) STOPS+=("$f"); continue ;; esac
  [ -e "$f" ] || continue
  log "setup: $f"
  # shellcheck disable=SC1090
  source "$f"
done
cleanup() {
  for s in "${STOPS[@]}"; do bash "$s" || true; done
}
trap cleanup EXIT

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "boundary checks"
bash scripts/check-boundaries.sh

# The sandboxed end-to-end tests start the real binaries (cambot, cambot-runner,
# cambot-sandbox-init) from the target directory.
log "cargo build (workspace binaries)"
cargo build --workspace --bins --locked

log "cargo test (workspace)"
out=$(mktemp)
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$out" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$out" | awk '{s+=$1} END {print s+0}')
echo
log "suites"
grep -E '^(SUITE|SKIPPED)' "$out" | sort -u || true
log "tests: $passed passed, $failed failed"
[ "$status" = 0 ] || die "test failures (see above)"
[ "$passed" -gt 0 ] || die "no test ran"
