#!/usr/bin/env bash
# Stops the dockerd that scripts/setup/sandbox.sh started (by its recorded PID, never by name).
pidfile="${CAMBOT_DOCKERD_PIDFILE:-/run/cambot-test-dockerd.pid}"
[ -s "$pidfile" ] || exit 0
pid="$(cat "$pidfile")"
if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
fi
rm -f "$pidfile"
