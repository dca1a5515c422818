#!/usr/bin/env bash
# The cargo tools behind scripts/test.sh's gates, from crates.io at pinned versions that build
# with the workspace's Rust (1.95):
#   cargo-deny 0.20.2   licenses, bans, sources, advisories (scripts/check-deny.sh, deny.toml)
#   cargo-shear 1.13.0  unused dependencies (1.14 needs rustc 1.98 through ra_ap_syntax)
#
# Idempotent: `cargo install --locked` runs only when the binary is missing or reports another
# version. Runs as a script or sourced by scripts/test.sh (needs cargo on the PATH; installs
# into $CARGO_HOME/bin).

cambot_rust_tools_setup() {
    _rt_log() { printf '\033[1m==> rust tools: %s\033[0m\n' "$*" >&2; }
    local pins=("cargo-deny 0.20.2" "cargo-shear 1.13.0")
    local pin name version installed
    # cargo's own record of what it installed (`cargo-shear --version` says only "dev").
    installed="$(cargo install --list 2>/dev/null || true)"
    for pin in "${pins[@]}"; do
        read -r name version <<<"$pin"
        if grep -qx "$name v$version:" <<<"$installed" && command -v "$name" >/dev/null 2>&1; then
            continue
        fi
        _rt_log "installing $name $version (a few minutes on 2 cores)"
        cargo install --locked --quiet "$name" --version "$version" || {
            _rt_log "cargo install $name $version failed"
            return 1
        }
    done
    _rt_log "$(cargo install --list | grep -E '^cargo-(deny|shear) ' | tr -d ':' | paste -sd ' ')"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cambot_rust_tools_setup || exit 1
else
    cambot_rust_tools_setup || return 1
fi
