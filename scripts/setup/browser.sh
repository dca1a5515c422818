#!/usr/bin/env bash
# Headless Chromium for the web chat's browser test
# (crates/cambot-channels/tests/suite/web/browser.rs), which drives it over the DevTools
# protocol. Debian's `chromium` package; no chromedriver needed.
#
# Idempotent, needs root on a fresh Debian 12 to install. Runs as a script or sourced by
# scripts/test.sh; when sourced it exports:
#   CHROMIUM   path of the chromium binary
# The test starts and stops its own browser process (killed when the test ends), so there is
# no browser-stop.sh.

cambot_browser_setup() {
    _br_log() { printf '\033[1m==> browser: %s\033[0m\n' "$*" >&2; }
    local missing=() p
    for p in chromium fonts-dejavu-core; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ]; then
            _br_log "missing ${missing[*]} and not root: cannot install"
        else
            _br_log "installing ${missing[*]}"
            if [ -z "${CAMBOT_APT_UPDATED:-}" ]; then
                apt-get update -qq >/dev/null || true
                export CAMBOT_APT_UPDATED=1
            fi
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" >/dev/null || { _br_log "apt-get install failed"; return 1; }
        fi
    fi
    local bin
    bin="$(command -v chromium || true)"
    if [ -z "$bin" ]; then
        _br_log "chromium is not installed; the browser test will fail under CAMBOT_REQUIRE_ALL=1"
        return 1
    fi
    export CHROMIUM="$bin"
    printf 'CHROMIUM=%s\n' "$bin"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cambot_browser_setup || exit 1
else
    cambot_browser_setup || return 1
fi
