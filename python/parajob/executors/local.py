"""The local executor: worker processes forked on this machine (today's fast path).

    engine --spawn--> fork() --> worker_main (runtime/worker.py), own process group
       ^                |  inherits the DispatchRegion (MAP_SHARED) and the eventfd
       |                v
    wait(): one select() over the eventfd (workers write it while the engine sleeps)
       |    and one pidfd per worker -> waitid/wait4 -> WorkerDied(worker, status, state)
       |    (+ the caller's own descriptors given to wake_on(): they end the wait, no event)
    expired(): _core.scan_expired over the worker slots -> DeadlineExpired
    kill(): SIGKILL the worker's process group; terminate(): SIGTERM it

Each worker is a forked child in its own process group, so a kill takes its grandchildren
too; a pidfd per child lets the engine wait on every exit in the same select() as its
eventfd (no SIGCHLD handler, no polling loop that could miss an exit). What the workers
start themselves is found and killed by executors/reaping.py (:meth:`start` / :meth:`stop`).

A refused fork() (EAGAIN: the process limit; ENOMEM) raises :class:`SpawnError`; the
engine decides whether the job can go on with fewer workers. Nothing here runs per
mini-batch: attempt ends reach the engine through the region's done ring.
"""

from __future__ import annotations

import os
import selectors
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parajob import _core
from parajob.executors.base import (
    DeadlineExpired,
    Event,
    ExitStatus,
    OnThisMachine,
    SpawnError,
    Worker,
    WorkerDied,
)
from parajob.executors.reaping import Descendants
from parajob.runtime import fd_guard
from parajob.runtime.accounting import Limits
from parajob.runtime.options import release_held_signals
from parajob.runtime.run_folder import close_in_child
from parajob.runtime.worker import WorkerSetup, worker_main

if TYPE_CHECKING:
    import socket

_WAKE_ONLY = "wake-only"  # selector data of a wake_on() descriptor


@dataclass(eq=False)
class WorkerProcess(Worker):
    """A forked worker: its pid (Worker.pid) and the pidfd the executor waits on."""

    pidfd: int = -1


class LocalExecutor(OnThisMachine):
    """Forks workers for the engine. Not thread-safe: the engine has one thread.

    notify_fd: the eventfd the workers write while the engine sleeps (the region's); kept
    open in the workers, every other descriptor the driver opened is closed there
    (runtime/fd_guard.py). The executor owns it from here on and closes it in close().
    """

    def __init__(self, setup: WorkerSetup, notify_fd: int, first_process: int = 1) -> None:
        self._setup = setup
        self._notify_fd = notify_fd
        self._next_process = first_process  # > every process id of an earlier run (resume)
        self._pidfds: set[int] = set()
        self._keep_fds = (notify_fd,)
        self._descendants = Descendants()
        self._pids: set[int] = set()  # workers forked and not yet reaped
        self._live: dict[int, WorkerProcess] = {}  # slot -> its process, until reaped
        self._selector = selectors.DefaultSelector()
        self._selector.register(notify_fd, selectors.EVENT_READ, None)

    def start(self) -> None:
        """Before the first spawn and before any thread: mark this step's processes and
        fork the janitor that cleans up after a killed driver (executors/reaping.py)."""
        self._descendants.start()

    def stop(self) -> None:
        """After the last reap: kill whatever the workers left behind (never blocks long)."""
        self._descendants.stop()

    def tend(self) -> None:
        """Reap exited grandchildren that reparented to the driver. Never blocks."""
        self._descendants.collect_orphans(self._pids)

    def close(self) -> None:
        self._selector.close()
        os.close(self._notify_fd)

    def wake(self) -> None:
        os.eventfd_write(self._notify_fd, 1)

    def wake_on(self, source: socket.socket | int) -> None:
        """Also end wait() when ``source`` is readable (it reports no event for it: the
        caller reads it after each wait). A Dask node's channel to its driver
        (executors/dask_node.py), waited on in the same select() as the workers."""
        self._selector.register(source, selectors.EVENT_READ, _WAKE_ONLY)

    def spawn(
        self, slot: int, node: int, local_rank: int, process: int | None = None
    ) -> WorkerProcess:
        """Fork a worker into slot, with the next process id, or ``process`` when given (a
        Dask node takes its driver's ids; later ones follow it). Raises SpawnError when
        fork() is refused."""
        if process is not None:
            self._next_process = process
        process = self._next_process
        region = self._setup.region
        region.reset_worker(slot, process)
        try:
            pid = os.fork()
        except OSError as exc:
            raise SpawnError(
                f"could not start a worker process: {exc} (fork failed); lower "
                "max_concurrency_per_instance or raise the process limit "
                "(ulimit -u)"
            ) from exc
        self._next_process += 1
        if pid == 0:  # child: never returns
            release_held_signals()  # forked inside the engine's signals_held()
            # Siblings' pidfds would keep their epoll registrations in the driver alive
            # after the driver closed them (the open file outlives the fd number).
            for fd in self._pidfds:
                os.close(fd)
            # Nor may it keep the run folder's lock alive should it outlive the driver.
            close_in_child()
            self._descendants.child_setup()
            fd_guard.close_inherited(self._keep_fds)
            worker_main(self._setup, slot, process, node, local_rank)
        # Also set from the parent: it closes the race where the driver kills the group
        # before the child's own setpgid() ran.
        try:
            os.setpgid(pid, pid)
        except OSError:  # the child already did it, or already exited
            pass
        region.set_worker_pid(slot, pid)
        self._descendants.spawned(pid)
        pidfd = os.pidfd_open(pid)
        self._pidfds.add(pidfd)
        self._pids.add(pid)
        worker = WorkerProcess(slot, process, node, local_rank, pid=pid, pidfd=pidfd)
        self._live[slot] = worker
        self._selector.register(pidfd, selectors.EVENT_READ, worker)
        return worker

    @staticmethod
    def kill(worker: Worker, because: str) -> None:
        """SIGKILL the worker's whole process group. Never blocks; wait() reports its end."""
        assert isinstance(worker, WorkerProcess)
        if worker.killed_because is None:
            worker.killed_because = because
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:  # the group is gone and its id reused: kill the child alone
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @staticmethod
    def terminate(worker: Worker) -> None:
        """SIGTERM the worker's process group (a clean stop: Ctrl-C, a limit exceeded)."""
        assert isinstance(worker, WorkerProcess)
        try:
            os.killpg(worker.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> list[Event]:
        """One select() over the eventfd, every live worker's pidfd and the wake_on()
        descriptors."""
        died: list[Event] = []
        for key, _ in self._selector.select(timeout):
            if key.data is _WAKE_ONLY:
                continue
            if key.data is None:
                try:
                    os.eventfd_read(self._notify_fd)
                except BlockingIOError:  # already read: nothing to do
                    pass
            elif (status := self._reap(key.data)) is not None:
                worker = key.data
                state = self._setup.region.worker_info(worker.slot)[2]
                died.append(WorkerDied(worker, status, state))
        return died

    def expired(self, limits: Limits) -> list[DeadlineExpired]:
        """The watchdog scan (C++, over every worker slot), for live workers not yet killed."""
        found = _core.scan_expired(
            self._setup.region,
            _core.monotonic_ns(),
            int(limits.run_timeout_s * 1e9),
            int(limits.init_timeout_s * 1e9),
            int(limits.load_timeout_s * 1e9),
        )
        late = []
        for slot, _pid, process, batch, attempt, kind, elapsed_ns in found:
            worker = self._live.get(slot)
            if worker is None or worker.process != process or worker.killed_because:
                continue
            late.append(DeadlineExpired(worker, batch, attempt, kind, elapsed_ns / 1e9))
        return late

    def _reap(self, worker: WorkerProcess) -> ExitStatus | None:
        """The exit status if the worker has exited (its pidfd then closed), else None."""
        if os.waitid(os.P_PIDFD, worker.pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return None  # readable pidfd, but not yet waitable: rare; try on the next event
        pid, status, usage = os.wait4(worker.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._selector.unregister(worker.pidfd)  # before the fd is closed and its number reused
        del self._live[worker.slot]
        self._pidfds.discard(worker.pidfd)
        self._pids.discard(worker.pid)
        os.close(worker.pidfd)
        peak = usage.ru_maxrss * 1024  # Linux reports kilobytes
        if os.WIFSIGNALED(status):
            return ExitStatus(None, os.WTERMSIG(status), peak)
        return ExitStatus(os.waitstatus_to_exitcode(status), None, peak)
