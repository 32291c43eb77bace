"""Run a service's ``__main__`` under cProfile with a CPU-time clock.

``python -m cProfile`` times functions by the wall clock, which on a loaded machine charges
a function for the time the process waited for a CPU after it (e.g. after a socket write
woke PostgreSQL). This times by process CPU time instead, so the profile adds up to what
the benchmarks report as the service's CPU. (The clock costs a system call per event:
absolute numbers are inflated, proportions are what to read.) The stats are written when
the service exits (SIGTERM included: the services exit through ``main()``).

    python bench/cpu_profile.py avisos_dispatcher OUT_FILE
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time

if __name__ == "__main__":
    module, out = sys.argv[1], sys.argv[2]
    sys.argv = [module]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)
