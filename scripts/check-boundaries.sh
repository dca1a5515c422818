#!/usr/bin/env bash
# Architecture rules that a compiler cannot check (ARCHITECTURE.md section 1, story 0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
# The orchestrator implements no channel: every channel lives in cambot-channels.
if grep -rn "impl Channel for" crates/cambot-agent/src; then
  echo "FAIL: crates/cambot-agent implements a channel; channels belong in cambot-channels" >&2
  fail=1
fi
# cambot-agent's dependency tree holds no channel implementation crate but cambot-channels.
others=$(cargo tree -p cambot-agent -e normal --prefix none 2>/dev/null | awk '{print $1}' | sort -u \
  | grep -E '^cambot-|telegram|whatsapp|teloxide|baileys|matrix-sdk|serenity' | grep -E 'channel|telegram|whatsapp|teloxide|baileys|matrix|serenity' | grep -vx 'cambot-channels' || true)
if [ -n "$others" ]; then
  echo "FAIL: cambot-agent depends on channel crates other than cambot-channels: $others" >&2
  fail=1
fi
# The runner (inside the sandbox) never links the orchestrator, the store or a sandbox backend.
if cargo tree -p cambot-runner -e normal --prefix none 2>/dev/null | awk '{print $1}' \
  | grep -qxE 'cambot-agent|cambot-core|cambot-sandbox|rusqlite|bollard'; then
  echo "FAIL: cambot-runner links host-only crates" >&2
  fail=1
fi
[ $fail = 0 ] && echo "boundaries: ok (no channel code in cambot-agent; runner links no host crates)"
exit $fail
