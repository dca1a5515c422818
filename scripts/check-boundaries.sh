#!/usr/bin/env bash
# Architecture rules that a compiler cannot check (ARCHITECTURE.md section 1, story 0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
# The crates a crate links (normal dependencies only: dev-dependency cycles for tests are
# allowed). Captured once per crate, and a crate cargo cannot resolve fails the check instead of
# passing it with an empty list.
links() {
  local out
  if ! out=$(cargo tree -p "$1" -e normal --prefix none 2>/dev/null); then
    echo "FAIL: cannot list the dependencies of $1" >&2
    return 1
  fi
  awk '{print $1}' <<<"$out" | sort -u
}
agent=$(links cambot-agent) || fail=1
runner=$(links cambot-runner) || fail=1
scheduler=$(links cambot-scheduler) || fail=1
gateway=$(links cambot-gateway) || fail=1
workflows=$(links cambot-workflows) || fail=1

# The orchestrator implements no channel: every channel lives in cambot-channels.
if grep -rn "impl Channel for" crates/cambot-agent/src; then
  echo "FAIL: crates/cambot-agent implements a channel; channels belong in cambot-channels" >&2
  fail=1
fi
# cambot-agent's dependency tree holds no channel implementation crate but cambot-channels.
others=$(grep -E '^cambot-|telegram|whatsapp|teloxide|baileys|matrix-sdk|serenity' <<<"$agent" \
  | grep -E 'channel|telegram|whatsapp|teloxide|baileys|matrix|serenity' | grep -vx 'cambot-channels' || true)
if [ -n "$others" ]; then
  echo "FAIL: cambot-agent depends on channel crates other than cambot-channels: $others" >&2
  fail=1
fi
# The runner (inside the sandbox) never links the orchestrator, the store, a sandbox backend or
# the host's scheduler and gateway.
bad=$(grep -xE 'cambot-agent|cambot-core|cambot-sandbox|cambot-scheduler|cambot-gateway|rusqlite|bollard' <<<"$runner" || true)
if [ -n "$bad" ]; then
  echo "FAIL: cambot-runner links host-only crates: $(tr '\n' ' ' <<<"$bad")" >&2
  fail=1
fi
# The scheduler and the gateway are libraries under the orchestrator: they never link it, a
# channel, a sandbox backend or the runner; the scheduler does not link the gateway either (the
# gateway uses the scheduler's rules, not the reverse).
bad=$(grep -xE 'cambot-agent|cambot-channels|cambot-sandbox|cambot-runner|cambot-gateway|bollard' <<<"$scheduler" || true)
if [ -n "$bad" ]; then
  echo "FAIL: cambot-scheduler links $(tr '\n' ' ' <<<"$bad")" >&2
  fail=1
fi
bad=$(grep -xE 'cambot-agent|cambot-channels|cambot-sandbox|cambot-runner|bollard' <<<"$gateway" || true)
if [ -n "$bad" ]; then
  echo "FAIL: cambot-gateway links $(tr '\n' ' ' <<<"$bad")" >&2
  fail=1
fi
# The workflow engine reaches sandboxes, channels and the queue only through its traits: it
# links no backend, channel, runner, gateway, scheduler or the orchestrator.
bad=$(grep -xE 'cambot-agent|cambot-channels|cambot-sandbox|cambot-runner|cambot-gateway|cambot-scheduler|bollard' <<<"$workflows" || true)
if [ -n "$bad" ]; then
  echo "FAIL: cambot-workflows links $(tr '\n' ' ' <<<"$bad")" >&2
  fail=1
fi
# Untrusted documents are parsed only inside a sandbox (ARCHITECTURE.md rule 6): the `cambot`
# binary links no document parser, archive reader or XML/HTML parser; `cambot-runner extract`
# does the parsing in the box. (infer, which only matches magic bytes, is allowed.)
bad=$(grep -xE 'zip|quick-xml|calamine|html2text|html5ever|xml5ever|markup5ever|roxmltree|xml-rs|lopdf|pdf|pdf-extract|pdfium-render|mupdf|poppler-rs|docx-rs|docx-rust|ooxmlsdk|scraper|flate2|cfb' <<<"$agent" || true)
if [ -n "$bad" ]; then
  echo "FAIL: cambot-agent links document parsers (they belong in cambot-runner, inside the sandbox): $(tr '\n' ' ' <<<"$bad")" >&2
  fail=1
fi
# SQLite is cambot-core's business: no other crate depends on rusqlite directly (its async Store
# traits are the seam; clippy.toml bans opening a connection elsewhere).
for toml in crates/*/Cargo.toml; do
  case "$toml" in crates/cambot-core/*) continue ;; esac
  if sed -n '/^\[dependencies\]/,/^\[/p' "$toml" | grep -q '^rusqlite'; then
    echo "FAIL: $toml depends on rusqlite; go through cambot_core's Store traits" >&2
    fail=1
  fi
done
[ $fail = 0 ] && echo "boundaries: ok (SQLite only in cambot-core; no channel code in cambot-agent; runner links no host crates; no document parser on the host; scheduler, gateway and workflows link no agent, channel, sandbox or runner crate)"
exit $fail
