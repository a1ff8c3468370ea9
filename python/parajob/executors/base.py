"""What the engine asks of an executor, and what an executor tells the engine.

An executor owns *where* attempts run; the engine (runtime/engine.py) owns what their ends
mean. They meet in two places:

    engine                                   executor (local: forked processes;
      |  commands:                            serial: the calling thread)
      |    start() / spawn(slot) / kill(w) / terminate(w) / tend() / stop() / close()
      |  questions (for the reports, never block):
      |    node_host(node) -> NodeHost / attempt_times(batches, attempts, slot times)
      |--------------------------------------------------------------------------->
      |  events, from wait(timeout) and expired(limits):
      |    WorkerDied(worker, status, state at death) / DeadlineExpired(...) / Interrupted
      |<---------------------------------------------------------------------------
      |
      |  attempt ends: not events. Workers claim and finish attempts in the C++
      |  DispatchRegion (next_batch, ResultWriter -> finish CAS), which pushes the ids
      |  of ended attempts to its done ring; the engine drains the ring vectorised,
      |  thousands of ends per call (one Python event per mini-batch cost ~15 us each).
      v
    DispatchRegion (the seam: the per-attempt state machine, one CAS per transition)

A refused start is an exception (:class:`SpawnError`) of ``spawn``, not an event: the
engine must know at once whether the slot has a worker, and decides what the refusal
means (go on with fewer, retry the slot later, or stop when none is left).

Invariants an executor keeps: every worker it returned from ``spawn`` is reported dead
exactly once (``WorkerDied`` from ``wait``), after which it holds nothing; ``kill`` and
``terminate`` never block; ``wait`` returns within about ``timeout`` seconds unless it is
the serial executor, which runs user code inside it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from parajob import _core
from parajob.runtime.accounting import Limits
from parajob.runtime.layout import node_name, process_name

__all__ = [
    "DeadlineExpired",
    "Event",
    "ExitStatus",
    "Executor",
    "Interrupted",
    "NodeHost",
    "OnThisMachine",
    "SpawnError",
    "Worker",
    "WorkerDied",
]


@dataclass(eq=False)  # identity: a slot's worker is replaced by another Worker object
class Worker:
    """One worker of the run, as the engine sees it (an executor may subclass it)."""

    slot: int  # index of its worker slot in the shared region
    process: int  # unique id in this run (its spool file, the batch state word)
    node: int
    local_rank: int
    killed_because: str | None = None  # set when the engine killed it on purpose
    pid: int = 0  # its OS process id where it runs (0: not known yet; Dask: the node's)

    @property
    def node_name(self) -> str:
        return node_name(self.node)

    @property
    def name(self) -> str:
        return process_name(self.local_rank)


SIGNAL_HINTS = {
    signal.SIGKILL: "killed: out of memory (the kernel's OOM killer), a timeout, or by hand",
    signal.SIGSEGV: "segmentation fault in native code",
    signal.SIGABRT: "aborted, usually by a failed assertion in native code",
    signal.SIGBUS: "bus error",
    signal.SIGTERM: "terminated",
}


@dataclass(frozen=True)
class ExitStatus:
    """How a worker ended: an exit code or a signal, and its peak memory."""

    code: int | None  # exit code, or None when killed by a signal
    signal: int | None
    peak_rss_bytes: int  # the process's peak resident memory (getrusage ru_maxrss)

    def describe(self) -> str:
        memory = f"peak memory {self.peak_rss_bytes / 2**20:.0f} MiB"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            hint = SIGNAL_HINTS.get(self.signal)  # type: ignore[call-overload]
            return f"killed by {name}{f' ({hint})' if hint else ''}, {memory}"
        return f"exited with code {self.code}, {memory}"


@dataclass(frozen=True)
class NodeHost:
    """Where one node of a step runs, as job_result.* and processed_mini-batches.csv name
    it: the host's name and, on a Dask cluster, the Dask worker's address ("" otherwise)."""

    node: int
    host: str
    address: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "host": self.host, "address": self.address}

    def describe(self) -> str:
        """ "node000 myhost", "node001 other (Dask worker tcp://10.0.0.2:40331)"."""
        where = f" (Dask worker {self.address})" if self.address else ""
        return f"{node_name(self.node)} {self.host}{where}"


class OnThisMachine:
    """node_host and attempt_times for executors whose workers run on this machine and
    stamp the batch slots with its CLOCK_MONOTONIC (local, serial)."""

    def node_host(self, node: int) -> NodeHost:
        # socket.gethostname()'s value (glibc's gethostname is uname's nodename), without
        # importing socket before the first fork.
        return NodeHost(node, os.uname().nodename)

    def attempt_times(
        self, batches: np.ndarray, attempts: np.ndarray, start_ns: np.ndarray, end_ns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        offset = time.time_ns() - _core.monotonic_ns()  # monotonic -> wall clock, now
        return (start_ns.astype(np.int64) + offset, end_ns.astype(np.int64) + offset)


class SpawnError(Exception):
    """A worker could not be started (fork() refused); the message says why and what to do."""


@dataclass(frozen=True)
class WorkerDied:
    """A worker ended (any way: a normal exit after the queue closed included). ``state``
    is its worker slot's state at death (_core.WorkerState): what it was doing says what
    failed; its exit code does not (run() may os._exit(3) as well as init() failing)."""

    worker: Worker
    status: ExitStatus
    state: int


@dataclass(frozen=True)
class DeadlineExpired:
    """A worker overran a deadline: ``kind`` "run" or "load" for the attempt (batch,
    attempt) it holds, "init" for init() (batch and attempt then -1)."""

    worker: Worker
    batch: int
    attempt: int
    kind: str
    elapsed_s: float


@dataclass(frozen=True)
class Interrupted:
    """The user interrupted the run where the executor runs it (serial: a KeyboardInterrupt
    in the calling thread, Ctrl-C at a pdb prompt included). The engine stops the step as
    interrupted, resumable. ``how``: what the user did, when it was no signal (the stop
    reason says "stopped by <how>" instead of "interrupted by SIGINT")."""

    signum: int = int(signal.SIGINT)
    how: str | None = None


Event = WorkerDied | DeadlineExpired | Interrupted


class Executor(Protocol):
    """Where attempts run. Called from the engine's one thread only."""

    def start(self) -> None:
        """Before the first spawn (the local executor forks its janitor here)."""

    def spawn(self, slot: int, node: int, local_rank: int) -> Worker:
        """Start a worker in ``slot`` (its slot reset in the region first); SpawnError
        when refused."""

    def kill(self, worker: Worker, because: str) -> None:
        """End the worker now, whatever it holds; sets ``worker.killed_because`` (first
        reason wins). Never blocks; its WorkerDied comes from a later wait()."""

    def terminate(self, worker: Worker) -> None:
        """Ask the worker to stop (the step stops early). Never blocks."""

    def wait(self, timeout: float) -> list[Event]:
        """Block up to ``timeout`` s for worker ends or a wake(); the events seen."""

    def expired(self, limits: Limits) -> list[DeadlineExpired]:
        """The live, not yet killed workers past a deadline now. Never blocks."""

    def wake(self) -> None:
        """Make a wait() in progress return soon (called from a signal handler)."""

    def tend(self) -> None:
        """Housekeeping at checkpoint cadence (the local executor reaps orphans)."""

    def stop(self) -> None:
        """After the last worker's end: clean up what the workers left behind."""

    def close(self) -> None:
        """Release the executor's own resources (descriptors). Last call."""

    def node_host(self, node: int) -> NodeHost:
        """Where node ``node`` runs (after start(): a Dask node names its host on arrival)."""

    def attempt_times(
        self, batches: np.ndarray, attempts: np.ndarray, start_ns: np.ndarray, end_ns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Wall-clock start and end (ns since the epoch) of these ended attempts (batch
        ids, attempt numbers), given their batch slots' CLOCK_MONOTONIC stamps in the
        driver's region. Local and serial: those stamps shifted to the wall clock; Dask:
        the times the nodes reported (the driver's slot only saw the claim and the
        report arrive). Vectorised; never blocks."""
