#!/usr/bin/env bash
# Sets up and runs cambot on its embedded defaults on a fresh Debian/Ubuntu machine (as root):
# SQLite, the bubblewrap sandbox, the local model when no provider key is set, and the terminal
# and web chat channels. Extra arguments go to `cambot` (default: `run`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
cd "$ROOT"
ensure_rust
for f in scripts/setup/runtime-*.sh; do
  [ -e "$f" ] || continue
  # shellcheck disable=SC1090
  source "$f"
done
log "building cambot (release)"
cargo build --release --locked -p cambot-agent -p cambot-runner
export PATH="$ROOT/target/release:$PATH"
cambot doctor || true
if [ $# -eq 0 ]; then set -- run; fi
log "starting: cambot $*  (Ctrl-C stops; a second Ctrl-C forces)"
exec cambot "$@"
