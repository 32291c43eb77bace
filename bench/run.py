"""``make bench``: run every benchmark (``bench/<area>/run.py``) one after another.

Each benchmark prints its own table and compares, in the same run, against the baselines
it names. ``BENCH_QUICK=1`` passes ``--quick`` (smaller sizes, for a smoke run);
``BENCH_ONLY=gateway,reports`` runs a subset.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    only = {x for x in os.environ.get("BENCH_ONLY", "").split(",") if x}
    quick = os.environ.get("BENCH_QUICK") == "1"
    failures = []
    for script in sorted(HERE.glob("*/run.py")):
        area = script.parent.name
        if only and area not in only:
            continue
        print(f"\n=== bench/{area} {'(quick)' if quick else ''} ===", flush=True)
        started = time.monotonic()
        args = [sys.executable, str(script)] + (["--quick"] if quick else [])
        rc = subprocess.call(args)
        print(f"=== bench/{area}: exit {rc} in {time.monotonic() - started:.0f} s ===", flush=True)
        if rc != 0:
            failures.append(area)
    if failures:
        print(f"benchmarks that failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
