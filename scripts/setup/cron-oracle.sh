#!/usr/bin/env bash
# Installs the Python oracle of the cron differential test
# (crates/cambot-agent/tests/suite/cron_differential.rs): croniter and the IANA zone data it reads.
# Idempotent: pip leaves already-installed exact versions alone.
#
#   CRON_ORACLE_PYTHON  interpreter to install into and to run the oracle with (default: python3)
#
# tzdata 2025.2 is IANA 2025b, the release bundled in chrono-tz 0.10.4; the oracle reads zones
# only from this package, so both sides use the same rules.
set -euo pipefail

PYTHON="${CRON_ORACLE_PYTHON:-python3}"
PINS=(
    "croniter==7.0.0"
    "python-dateutil==2.9.0.post0"
    "six==1.17.0"
    "tzdata==2025.2"
)

if "$PYTHON" - "${PINS[@]}" <<'PY'
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
    echo "cron oracle: ${PINS[*]} already installed"
    exit 0
fi

"$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore --quiet "${PINS[@]}"
echo "cron oracle: installed ${PINS[*]}"
