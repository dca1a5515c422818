#!/usr/bin/env python3
"""Oracle for crates/cambot-scheduler/tests/suite/cron_differential.rs: Python croniter.

Reads JSON Lines on stdin, one case per line:
    {"id": 7, "expr": "30 2 * * *", "tz": "America/New_York", "after": 1710054000, "count": 8}
and writes one JSON line per case, in order:
    {"id": 7, "next": [1710054000, ...]}     the next `count` firings strictly after `after`
                                             (Unix seconds), each from croniter's iterator
    {"id": 7, "error": "CroniterBadDateError: ..."}   croniter rejected the expression/date
The first line written is a header: {"croniter": "<version>", "tzdata": "<IANA version>"}.

Zones come only from the `tzdata` package (pinned by scripts/setup/cron-oracle.sh to the IANA
release chrono-tz bundles), never from the system's /usr/share/zoneinfo.

Exit status 3: croniter or tzdata is not importable (run scripts/setup/cron-oracle.sh).
"""

import datetime
import json
import sys
from importlib import metadata

try:
    import tzdata
    import zoneinfo
    from croniter import croniter
except ImportError as err:
    sys.stderr.write(
        f"croniter oracle unavailable ({err}); run scripts/setup/cron-oracle.sh\n"
    )
    sys.exit(3)

zoneinfo.reset_tzpath(to=[])


def answer(case):
    tz = zoneinfo.ZoneInfo(case["tz"])
    start = datetime.datetime.fromtimestamp(case["after"], tz)
    try:
        it = croniter(case["expr"], start)
        return {
            "id": case["id"],
            "next": [
                int(it.get_next(datetime.datetime).timestamp())
                for _ in range(case.get("count", 1))
            ],
        }
    except Exception as err:  # croniter raises several unrelated types
        return {"id": case["id"], "error": f"{type(err).__name__}: {err}"}


def main():
    out = sys.stdout
    out.write(
        json.dumps({"croniter": metadata.version("croniter"), "tzdata": tzdata.IANA_VERSION})
        + "\n"
    )
    for line in sys.stdin:
        if line.strip():
            out.write(json.dumps(answer(json.loads(line))) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
