"""Run the dispatcher under cProfile with a CPU-time clock (``BENCH_PROFILE`` in run.py).

``python -m cProfile`` times functions by the wall clock, which on a loaded machine charges
a function for the time the process waited for a CPU after it (e.g. after a socket write
woke PostgreSQL). This times by process CPU time instead, so the profile adds up to what
the bench reports as dispatcher CPU. (The clock costs a system call per event: absolute
numbers are inflated, proportions are what to read.)

    python bench/dispatcher/cpu_profile.py OUT_FILE
"""

from __future__ import annotations

import cProfile
import sys
import time

from avisos_dispatcher.__main__ import main

if __name__ == "__main__":
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(sys.argv[1])
