#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian/Ubuntu machine (as root) and runs it:
# the gates (format check, clippy, the boundary checks, cargo deny, unused dependencies with
# cargo shear, rustdoc with warnings as errors) and every test of the workspace, the ignored
# ones included: those need the real sandboxes (bubblewrap always; Docker when dockerd starts),
# the real local model, the cron oracle or a real headless Chromium, which the setup fragments
# install. Fails when a gate fails, a test fails, a test stays ignored or no test ran.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
cd "$ROOT"
ensure_rust
# Tests that need a tool installed below (bwrap, dockerd, llama-server, chromium) are #[ignore]d
# in a plain `cargo test`; here they run (--include-ignored) and fail instead of skipping when
# the tool is missing: a green run means every suite really ran.
export CAMBOT_REQUIRE_ALL=1

# Per-area setup fragments (sandbox tools and dockerd, the local model, the cron oracle, the
# browser, the gates' cargo tools...). Each is idempotent and may export variables into this
# shell.
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
log "cargo deny (licenses, bans, sources, advisories)"
deny_out=$(mktemp)
bash scripts/check-deny.sh | tee "$deny_out"
log "cargo shear (unused dependencies)"
cargo shear
log "cargo doc (rustdoc warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

# The sandboxed end-to-end tests start the real binaries (cambot, cambot-runner,
# cambot-sandbox-init) from the target directory.
log "cargo build (workspace binaries)"
cargo build --workspace --bins --locked

log "cargo test (workspace)"
out=$(mktemp)
set +e
cargo test --workspace --locked --no-fail-fast -- --include-ignored 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
# count WORD: the sum of "N WORD" over libtest's "test result:" lines.
# (`|| true`: no such line is a count of 0, not a reason for set -e to stop before the summary.)
count() { grep -E '^test result: ' "$out" | grep -Eo "[0-9]+ $1" | awk '{s+=$1} END {print s+0}' || true; }
passed=$(count passed)
failed=$(count failed)
ignored=$(count ignored)
echo
log "suites"
grep -E '^(SUITE|SKIPPED)' "$out" | sort -u || true
grep -E '^ADVISORIES SKIPPED' "$deny_out" || true
log "tests: $passed passed, $failed failed, $ignored ignored"
[ "$status" = 0 ] || die "test failures (see above)"
[ "$passed" -gt 0 ] || die "no test ran"
# --include-ignored runs every test: one still ignored did not run.
[ "$ignored" = 0 ] || die "$ignored tests were ignored despite --include-ignored"
