#!/usr/bin/env bash
# cargo deny with deny.toml: licenses, bans (duplicate versions warn), sources (crates.io only)
# and advisories. The RustSec advisory database is a git repository that cargo-deny clones from
# GitHub: it is fetched when the network allows; otherwise a copy already on disk is used as it
# is; with neither, the advisories check is skipped and one line (ADVISORIES SKIPPED) says why.
# Needs cargo-deny (scripts/setup/rust-tools.sh installs it). Inclusion graphs are hidden (the
# duplicate warnings run to hundreds of lines): `cargo deny check` shows who pulls a crate in.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# The same root as deny.toml's db-path.
db_root="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
fetch_log="$(mktemp)"
trap 'rm -f "$fetch_log"' EXIT

# Bounded: a network that drops packets would otherwise hang here.
if timeout "${CAMBOT_ADVISORY_FETCH_TIMEOUT:-120}" cargo deny --locked fetch db >"$fetch_log" 2>&1; then
  log "cargo deny: advisory database fetched"
  cargo deny --locked --offline check --hide-inclusion-graph
  exit 0
fi
why="$({ grep -E 'fatal:|ERROR' "$fetch_log" || true; } | tail -n 1 | sed -E 's/^.*(fatal|ERROR)\]? *:? *//')"
[ -n "$why" ] || why="cargo deny fetch db failed or timed out"

shopt -s nullglob
local_dbs=("$db_root"/*/crates)
shopt -u nullglob
if [ ${#local_dbs[@]} -gt 0 ]; then
  db="$(dirname "${local_dbs[0]}")"
  log "cargo deny: fetch failed ($why); using the local advisory database $db (last commit $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo unknown))"
  cargo deny --locked --offline check --hide-inclusion-graph
else
  echo "ADVISORIES SKIPPED: the RustSec database could not be fetched ($why) and there is no local copy under $db_root"
  cargo deny --locked check --hide-inclusion-graph bans licenses sources
fi
