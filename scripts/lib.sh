#!/usr/bin/env bash
# Shared helpers for the setup, run and test scripts. Source it; do not run it.

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "run this as root (it installs packages): sudo $0"
}

# apt_install PKG... — installs only what is missing, quietly.
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ -z "${CAMBOT_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    export CAMBOT_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust — cargo 1.95+ (edition 2024). Debian's packaged Rust is too old.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    apt_install ca-certificates curl build-essential pkg-config
    log "installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy \
      || die "no Rust toolchain and rustup could not be downloaded; install Rust >= 1.95 and retry"
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  apt_install build-essential pkg-config
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CAMBOT_CACHE_DIR="${CAMBOT_CACHE_DIR:-$HOME/.cache/cambot}"
