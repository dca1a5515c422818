#!/usr/bin/env bash
# Installs the Python oracle of the cron differential test
# (crates/cambot-scheduler/tests/suite/cron_differential.rs): croniter and the IANA zone data it
# reads, at pinned versions, into a virtual environment under the cache directory.
#
# Idempotent: a second run finds the pins installed and does nothing. Runs either as a script or
# sourced by scripts/test.sh; when sourced it exports CRON_ORACLE_PYTHON into the caller's shell
# (the test also finds the environment by itself at the default place).
#
#   CAMBOT_CACHE_DIR     cache root (default: $HOME/.cache/cambot); the environment is
#                        $CAMBOT_CACHE_DIR/cron-oracle-venv
#   CRON_ORACLE_BASE_PYTHON  interpreter the environment is made from (default: python3)
#
# Output (printed, and exported when sourced):
#   CRON_ORACLE_PYTHON   the environment's python
#
# tzdata 2025.2 is IANA 2025b, the release chrono-tz 0.10.4 bundles; the oracle reads zones only
# from this package, so both sides of the test use the same rules.

cambot_cron_oracle_setup() {
    local base="${CRON_ORACLE_BASE_PYTHON:-python3}"
    local venv="${CAMBOT_CACHE_DIR:-$HOME/.cache/cambot}/cron-oracle-venv"
    local python="$venv/bin/python"
    local pins=(
        "croniter==7.0.0"
        "python-dateutil==2.9.0.post0"
        "six==1.17.0"
        "tzdata==2025.2"
    )

    if [ ! -x "$python" ]; then
        mkdir -p "$(dirname "$venv")" || return 1
        if ! "$base" -m venv "$venv"; then
            echo "cron oracle: cannot make a virtual environment with $base (on Debian: apt-get install python3-venv)" >&2
            return 1
        fi
    fi
    if ! "$python" - "${pins[@]}" <<'PY'
import sys
from importlib import metadata
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PY
    then
        "$python" -m pip install --disable-pip-version-check --quiet "${pins[@]}" || return 1
        echo "cron oracle: installed ${pins[*]}" >&2
    fi
    export CRON_ORACLE_PYTHON="$python"
    printf 'CRON_ORACLE_PYTHON=%s\n' "$python"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cambot_cron_oracle_setup || exit 1
else
    cambot_cron_oracle_setup || return 1
fi
