"""``--profiling_module cProfile`` (or ``profile``): each worker's run() calls, profiled.

    worker start: load_and_init -> script --RunProfiler.wrap--> script' (run = profiled run)
    every mini-batch: _run_one calls script'.run   (the per-call cost is the profiler's own)
    worker end (queue closed, or recycled): RunProfiler.write
        -> logs/sys/profile/<node>/<processNNN>.<process id>.prof   (pstats; snakeviz, etc.)
        -> logs/sys/profile/<node>/<processNNN>.<process id>.txt    (top 20 by cumulative time)

The choice is made once, at worker start, by replacing the script's run function: with the
option off, the hot path (runtime/worker.py _run_one) runs exactly as before, with no check
per call. Only run() is profiled: init() and shutdown() are not (init()'s import time would
drown run()'s figures). A worker that dies (crash, kill, timeout) writes no stats; the
process id in the file name tells a replacement's stats from its predecessor's.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
from pathlib import Path
from typing import Any

from parajob.runtime.entry_script import EntryScript

__all__ = ["RunProfiler", "profile_paths"]

TOP = 20


def profile_paths(logs: Path, node: str, name: str, process: int) -> tuple[Path, Path]:
    """(.prof, .txt) of one worker process."""
    folder = logs / "sys" / "profile" / node
    return folder / f"{name}.{process}.prof", folder / f"{name}.{process}.txt"


class RunProfiler:
    """One profiler per worker process, accumulating over all its run() calls."""

    def __init__(self, module: str) -> None:
        # "cProfile" or "profile": spec/arguments.py accepts no other value.
        self.module = module
        self.profile: Any = importlib.import_module(module).Profile()
        self.calls = 0

    def wrap(self, script: EntryScript) -> EntryScript:
        """The same script whose run() is profiled (runcall re-raises what run() raises)."""
        run, runcall = script.run, self.profile.runcall

        def profiled_run(*args: Any) -> Any:
            self.calls += 1
            return runcall(run, *args)

        return dataclasses.replace(script, run=profiled_run)

    def write(self, prof: Path, text: Path) -> None:
        """Dump the stats and a text top-20; raises OSError when they cannot be written."""
        prof.parent.mkdir(parents=True, exist_ok=True)
        self.profile.dump_stats(str(prof))
        out = io.StringIO()
        out.write(
            f"{self.module} profile of run(): {self.calls} call(s); top {TOP} by cumulative time\n"
        )
        if self.calls:
            import pstats  # here, not at the top: every worker imports this module

            pstats.Stats(str(prof), stream=out).sort_stats("cumulative").print_stats(TOP)
        text.write_text(out.getvalue(), encoding="utf-8")
