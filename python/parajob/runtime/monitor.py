"""The resource monitor (``--resource_monitor_interval N``): CSV samples under logs/sys/perf/.

    engine: started right after the first workers are forked (psutil's import and these
            files then delay none of them), then ticked by its loop:
    engine loop (driver thread) --every checkpoint turn--> Monitor.tick(workers)
        |  at most once per interval (0 = off: no Monitor is made at all)
        v
    psutil: machine CPU / memory / disk / network, each worker's CPU and RSS
    nvidia-ml-py (pynvml): GPU utilisation and memory, only when importable and a GPU exists
        |
        v
    logs/sys/perf/<node>/machine.csv, processes.csv, gpu.csv   (columns: COLUMNS below)

Why no thread: the local executor forks replacement workers at any moment, from the
engine's thread. A sampler thread holding a lock at that instant (psutil's, the allocator's,
logging's, a file object's) would leave it held forever in the child, which can deadlock
there. Sampling *from the engine's own loop* means that no sampler code ever runs while the
executor forks, with no lock shared between the two and nothing to stop at the end: the
loop turns at least every TICK_S (0.25 s) and checks the interval at checkpoint cadence
(0.5 s), so a sample is at most about half a second late. The price: under the serial
executor (user code runs inside the engine's wait) samples are taken between mini-batches.

Invariants: never imported by a worker, never called after fork in a child; every file is
opened by the driver for one sample and closed at once (a run killed now keeps its
samples, and a worker forked later inherits no descriptor of the monitor's). A sampling
error (a process gone between listing and reading it) skips that value, never the job.
Simulated nodes share this machine: each node's machine.csv holds the same machine-wide
figures; processes.csv holds that node's workers only.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from parajob.runtime.layout import node_name

__all__ = ["COLUMNS", "Monitor", "MonitoredWorker", "perf_dir"]

# The documented columns of each file (README "Resource monitor"); tests check them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "machine": (
        "time",
        "elapsed_s",
        "cpu_percent",
        "memory_used_bytes",
        "memory_available_bytes",
        "memory_percent",
        "disk_used_bytes",
        "disk_free_bytes",
        "disk_read_bytes",
        "disk_write_bytes",
        "net_sent_bytes",
        "net_recv_bytes",
        "monitor_s",
    ),
    "processes": ("time", "elapsed_s", "worker", "process", "pid", "cpu_percent", "rss_bytes"),
    "gpu": (
        "time",
        "elapsed_s",
        "gpu",
        "utilization_percent",
        "memory_used_bytes",
        "memory_total_bytes",
    ),
}


class MonitoredWorker(Protocol):
    """What the monitor reads of an engine's worker (executors/base.py Worker)."""

    @property
    def node(self) -> int: ...
    @property
    def process(self) -> int: ...
    @property
    def name(self) -> str: ...


def perf_dir(logs: Path) -> Path:
    return logs / "sys" / "perf"


class Monitor:
    """Samples at most once per ``interval_s``; driven by :meth:`tick` from one thread.

    The disk and network byte counts are since the monitor started (machine-wide, from
    psutil's counters); cpu_percent is over the time since the previous sample."""

    def __init__(self, logs: Path, interval_s: float, nodes: int, disk_path: Path) -> None:
        # A runtime dependency; imported here so that interval 0 never pays for it. Typed
        # as Any: types-psutil is not a dependency.
        import psutil  # type: ignore[import-untyped, unused-ignore]

        self._psutil = psutil
        self.interval_s = interval_s
        self.disk_path = disk_path
        self.started = time.monotonic()
        self.next_due = self.started  # the first tick samples at once
        self.samples = 0
        self.busy_s = 0.0  # time spent in sample() so far: the monitor's own cost
        self._procs: dict[tuple[int, int], Any] = {}  # (pid, process) -> psutil.Process
        self._gpus = _open_gpus()
        self.kinds = ["machine", "processes"] + (["gpu"] if self._gpus else [])
        self.folders = [perf_dir(logs) / node_name(node) for node in range(nodes)]
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
            for kind in self.kinds:
                with open(folder / f"{kind}.csv", "a", encoding="utf-8", newline="") as f:
                    if f.tell() == 0:  # a resumed run appends to the same files
                        csv.writer(f).writerow(COLUMNS[kind])
        self.nodes = nodes
        self._io0 = _counters(psutil)
        psutil.cpu_percent(None)  # primes the machine-wide figure (first call returns 0)

    def tick(self, workers: Iterable[MonitoredWorker]) -> None:
        """Sample if the interval has passed. Called by the engine's loop only."""
        now = time.monotonic()
        if now < self.next_due:
            return
        # From the due time, not from now: a late tick does not shift every later sample.
        self.next_due = max(self.next_due + self.interval_s, now)
        self.sample(workers)

    def sample(self, workers: Iterable[MonitoredWorker]) -> None:
        began = time.perf_counter()
        psutil = self._psutil
        # UTC with milliseconds and a Z, as processed_mini-batches.csv writes its times.
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
        elapsed = f"{time.monotonic() - self.started:.3f}"
        machine = self._machine_row(stamp, elapsed)
        gpu_rows = self._gpu_rows(stamp, elapsed)
        by_node: list[list[tuple[object, ...]]] = [[] for _ in range(self.nodes)]
        alive: set[tuple[int, int]] = set()
        for worker in workers:
            pid = int(getattr(worker, "pid", 0) or 0)
            if pid <= 0 or worker.node >= self.nodes:
                continue  # the serial executor's worker is this process: machine.csv says it
            key = (pid, worker.process)
            alive.add(key)
            try:
                proc = self._procs.get(key)
                if proc is None:
                    proc = self._procs[key] = psutil.Process(pid)
                    proc.cpu_percent(None)  # primes it: the first figure would be 0
                with proc.oneshot():
                    cpu, rss = proc.cpu_percent(None), proc.memory_info().rss
            except (psutil.Error, OSError):
                continue  # it ended between the engine's list and this read
            by_node[worker.node].append(
                (stamp, elapsed, worker.name, worker.process, pid, f"{cpu:.1f}", rss)
            )
        for key in set(self._procs) - alive:
            del self._procs[key]
        # Opened for each sample, never held: a worker forked later inherits no descriptor
        # of ours (user code may write to "every" fd), and there is nothing to close.
        for node, folder in enumerate(self.folders):
            rows = {"machine": [machine], "processes": by_node[node], "gpu": gpu_rows}
            for kind in self.kinds:
                if rows[kind]:
                    with open(folder / f"{kind}.csv", "a", encoding="utf-8", newline="") as f:
                        csv.writer(f).writerows(rows[kind])
        self.samples += 1
        self.busy_s += time.perf_counter() - began

    def _machine_row(self, stamp: str, elapsed: str) -> tuple[object, ...]:
        psutil = self._psutil
        memory = psutil.virtual_memory()
        try:
            disk = psutil.disk_usage(str(self.disk_path))
            used, free = disk.used, disk.free
        except OSError:
            used = free = ""
        io = _counters(psutil)
        return (
            stamp,
            elapsed,
            f"{psutil.cpu_percent(None):.1f}",
            memory.used,
            memory.available,
            f"{memory.percent:.1f}",
            used,
            free,
            *(_delta(io[i], self._io0[i]) for i in range(4)),
            f"{self.busy_s:.6f}",
        )

    def _gpu_rows(self, stamp: str, elapsed: str) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        if not self._gpus:
            return rows
        pynvml, handles = self._gpus
        for index, handle in enumerate(handles):
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:  # noqa: BLE001 - a driver hiccup costs one row, not the job
                continue
            rows.append((stamp, elapsed, index, util.gpu, memory.used, memory.total))
        return rows

    def close(self) -> None:
        """Release NVML (no file is held between samples); idempotent."""
        if self._gpus:
            try:
                self._gpus[0].nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._gpus = None


def _counters(psutil: Any) -> tuple[int | None, int | None, int | None, int | None]:
    """(disk read, disk written, net sent, net received) bytes; None where unavailable."""
    try:
        disk = psutil.disk_io_counters()
    except (OSError, RuntimeError):
        disk = None
    try:
        net = psutil.net_io_counters()
    except (OSError, RuntimeError):
        net = None
    return (
        disk.read_bytes if disk else None,
        disk.write_bytes if disk else None,
        net.bytes_sent if net else None,
        net.bytes_recv if net else None,
    )


def _delta(now: int | None, start: int | None) -> object:
    return "" if now is None or start is None else now - start


def _open_gpus() -> tuple[Any, list[Any]] | None:
    """(pynvml, device handles), or None: nvidia-ml-py not installed, no driver, no GPU.
    Never raises: a machine without a GPU simply has no gpu.csv."""
    try:
        import pynvml  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            pynvml.nvmlShutdown()
            return None
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None
