"""One timed run of one runner, from outside, and the check of what it wrote.

    launch(cmd) --Popen--> the runner's process --exit--> Launch(wall, peak RSS, rc, stderr)
                   a thread polls /proc/<pid>/status VmHWM every POLL_S meanwhile
    digest(out) -> (lines, order-free hash): equal digests = equal multisets of lines
    differences(a, b) -> a few lines that one has more of (for the failure message)

Wall time is Popen to exit (interpreter start, imports, listing, the work, the writes and
the shutdown all count, for every runner alike). VmHWM is the launched process's own peak
RSS (the driver / parent; not its workers); read until it exits, so a peak in the last
POLL_S before exit can be missed (the peaks measured here are in planning, not at exit).
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.005
BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent


@dataclass(frozen=True)
class Launch:
    started_at: float  # time.time() just before Popen (for the first-run() measure)
    wall_s: float
    peak_rss_mib: float
    returncode: int
    stderr: str


def env() -> dict[str, str]:
    """The runners' environment: parajob from this checkout, the peers package from bench/.

    Without PYTHONDONTWRITEBYTECODE (the dev machine sets it): with it, every launch of
    parajob compiled its ~100 modules again (cProfile of a 10-file `parajob run`: 0.19 s
    of 0.98 s in compile()), which a pip-installed parajob (.pyc written at install) never
    pays, while the peers' few small modules cost little. compile_packages() writes the byte code
    of parajob and bench/peers before the first launch (to the ignored __pycache__/)."""
    path = [str(REPO / "python"), str(BENCH)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    launched = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    launched.pop("PYTHONDONTWRITEBYTECODE", None)
    return launched


def compile_packages() -> None:
    """Byte code for parajob and bench/peers, as a pip install writes it (see env())."""
    for package in (REPO / "python" / "parajob", BENCH / "peers"):
        compileall.compile_dir(package, quiet=1)


def _peak_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def launch(cmd: list[str], timeout_s: float = 900, cwd: Path | None = None) -> Launch:
    """Run cmd to its end; wall time and peak RSS of the launched process."""
    peak = [0]
    started_at = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            kib = _peak_kib(proc.pid)
            if kib is not None:
                peak[0] = max(peak[0], kib)
            done.wait(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        _out, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, stderr = proc.communicate()
        stderr += f"\n(killed after {timeout_s} s)"
    wall = time.perf_counter() - started
    done.set()
    poller.join()
    return Launch(started_at, wall, peak[0] / 1024, proc.returncode, stderr)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def digest(path: Path) -> tuple[int, int]:
    """(number of lines, sum of their hashes mod 2**64): the same for the same multiset."""
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    return len(lines), sum(map(hash, lines)) & 0xFFFF_FFFF_FFFF_FFFF


def differences(path: Path, reference: Path, limit: int = 3) -> str:
    got = Counter(path.read_bytes().splitlines())
    want = Counter(reference.read_bytes().splitlines())
    extra, missing = got - want, want - got
    return (
        f"{sum(extra.values())} line(s) not in serial's, e.g. {list(extra)[:limit]}; "
        f"{sum(missing.values())} of serial's missing, e.g. {list(missing)[:limit]}"
    )
