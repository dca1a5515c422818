#!/usr/bin/env bash
# Sandbox tools for cambot and its tests: bubblewrap (the default backend), Docker (the second
# backend, started here because this kind of machine has no systemd), and poppler-utils
# (`pdftotext`, run by the document extractor inside the sandbox, seen there through the
# read-only /usr). See
# shared/reference/sandbox-probes.md sections 3, 6 and 11 for why these exact flags.
#
# Idempotent, needs root on a fresh Debian 12. Runs as a script or sourced by scripts/test.sh;
# when sourced it exports:
#   CAMBOT_BWRAP          path of bwrap
#   CAMBOT_DOCKER_SOCK    path of the Docker API socket (only when dockerd answered)
# dockerd's PID goes to $CAMBOT_DOCKERD_PIDFILE (default /run/cambot-test-dockerd.pid) so that
# scripts/setup/sandbox-stop.sh can stop exactly the daemon this script started.

cambot_sandbox_setup() {
    local pidfile="${CAMBOT_DOCKERD_PIDFILE:-/run/cambot-test-dockerd.pid}"
    local sock="${CAMBOT_DOCKER_SOCK_PATH:-/var/run/docker.sock}"
    local log="${CAMBOT_DOCKERD_LOG:-/tmp/cambot-dockerd.log}"
    _sb_log() { printf '\033[1m==> sandbox: %s\033[0m\n' "$*" >&2; }

    local missing=() p
    for p in bubblewrap docker.io python3-minimal poppler-utils; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ]; then
            _sb_log "missing ${missing[*]} and not root: cannot install"
        else
            _sb_log "installing ${missing[*]}"
            if [ -z "${CAMBOT_APT_UPDATED:-}" ]; then
                apt-get update -qq >/dev/null || true
                export CAMBOT_APT_UPDATED=1
            fi
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" >/dev/null || _sb_log "apt-get install ${missing[*]} failed"
        fi
    fi

    local bwrap
    bwrap="$(command -v bwrap || true)"
    if [ -n "$bwrap" ]; then
        export CAMBOT_BWRAP="$bwrap"
        _sb_log "bwrap: $bwrap ($("$bwrap" --version 2>/dev/null))"
    else
        _sb_log "bwrap is not installed"
    fi

    # The Debian client is 20.10; /usr/local/bin/docker may be newer. Either talks to the engine.
    local docker
    docker="$(command -v docker || true)"
    _sb_docker_up() { [ -S "$sock" ] && [ -n "$docker" ] && DOCKER_HOST="unix://$sock" "$docker" info >/dev/null 2>&1; }
    if ! _sb_docker_up; then
        local dockerd
        dockerd="$(command -v dockerd || true)"
        if [ -z "$dockerd" ]; then
            _sb_log "dockerd is not installed: Docker suites will be skipped"
        elif [ "$(id -u)" != 0 ]; then
            _sb_log "dockerd needs root: Docker suites will be skipped"
        else
            _sb_log "starting dockerd (no iptables, no bridge; log: $log)"
            # setsid: a daemon outlives the sourcing shell's job control and ignores its SIGINT.
            setsid "$dockerd" --host "unix://$sock" --iptables=false --ip6tables=false \
                --bridge=none >"$log" 2>&1 </dev/null &
            echo $! >"$pidfile"
            local i
            for i in $(seq 100); do
                _sb_docker_up && break
                kill -0 "$(cat "$pidfile")" 2>/dev/null || break
                sleep 0.2
            done
        fi
    fi
    if _sb_docker_up; then
        export CAMBOT_DOCKER_SOCK="$sock"
        _sb_log "docker: $sock answers"
    else
        unset CAMBOT_DOCKER_SOCK
        _sb_log "docker: not available (see $log)"
    fi
    printf 'CAMBOT_BWRAP=%s\nCAMBOT_DOCKER_SOCK=%s\n' "${CAMBOT_BWRAP:-}" "${CAMBOT_DOCKER_SOCK:-}"
}

cambot_sandbox_setup
