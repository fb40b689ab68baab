"""Run a command pinned to a core; write its wall time and rusage (from wait4) as JSON.  Used by crawl_bench.py.

    python -I -S benchmarks/spawn_measured.py RESULT.json CORE TIMEOUT -- COMMAND...

Why a launcher: on Linux a child's ru_maxrss is at least the RSS of the process that forked it (the forked copy of
the parent's memory counts until exec), so a child forked by the benchmark, which holds the whole site in memory,
would report the benchmark's RSS.  This launcher is a bare interpreter of a few MB, so the peak RSS it reports is
the command's own.  CORE "-" means no pinning.  The command is killed after TIMEOUT seconds.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main() -> None:
    result_path, core, timeout, dash, *command = sys.argv[1:]
    if dash != "--" or not command:
        raise SystemExit(__doc__)
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            if core != "-":
                os.sched_setaffinity(0, {int(core)})
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.setitimer(signal.ITIMER_REAL, float(timeout))
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    signal.setitimer(signal.ITIMER_REAL, 0)
    result = {
        "exit_code": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
    }
    with open(result_path, "w", encoding="utf-8") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main()
