"""Run the gateway under cProfile with a CPU-time clock (wall time is meaningless on a
shared machine) and write the stats to the path in BENCH_GATEWAY_PROFILE on SIGTERM.

Used by run.py when BENCH_GATEWAY_PROFILE is set."""

from __future__ import annotations

import cProfile
import os
import time

from avisos_gateway.__main__ import main

if __name__ == "__main__":
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_GATEWAY_PROFILE"])
