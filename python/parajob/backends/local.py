"""Worker processes on this machine: fork, watch through pidfds, kill, reap.

The driver calls these from its single thread. Each worker is a forked child in its own
process group, so a kill takes its grandchildren too; a pidfd per child lets the driver
wait on every exit in the same select() as its eventfd (no SIGCHLD handler, no polling
loop that could miss an exit). What the workers start themselves is found and killed by
backends/reaping.py (:meth:`LocalBackend.start` / :meth:`LocalBackend.stop`).

A refused fork() (EAGAIN: the process limit; ENOMEM) raises :class:`SpawnError`; the
driver decides whether the job can go on with fewer workers.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from parajob.backends.reaping import Descendants
from parajob.runtime import fd_guard
from parajob.runtime.layout import node_name, process_name
from parajob.runtime.run_folder import close_in_child
from parajob.runtime.worker import WorkerSetup, worker_main


@dataclass
class WorkerProcess:
    slot: int          # index of its worker slot in the shared region
    process: int       # unique id in this run (its spool file, the batch state word)
    node: int
    local_rank: int
    pid: int
    pidfd: int
    killed_because: str | None = None  # set when the driver killed it on purpose

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
    code: int | None     # exit code, or None when killed by a signal
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


class SpawnError(Exception):
    """fork() refused to make a worker process; the message says why and what to do."""


class LocalBackend:
    """Forks workers for the driver. Not thread-safe: the driver has one thread.

    keep_fds: the driver's descriptors a worker needs (the eventfd); every other one the
    driver opened is closed in the worker (runtime/fd_guard.py).
    """

    def __init__(self, setup: WorkerSetup, first_process: int = 1,
                 keep_fds: tuple[int, ...] = ()) -> None:
        self._setup = setup
        self._next_process = first_process  # > every process id of an earlier run (resume)
        self._pidfds: set[int] = set()
        self._keep_fds = keep_fds
        self._descendants = Descendants()
        self._pids: set[int] = set()  # workers forked and not yet reaped

    def start(self) -> None:
        """Before the first spawn and before any thread: mark this step's processes and
        fork the janitor that cleans up after a killed driver (backends/reaping.py)."""
        self._descendants.start()

    def stop(self) -> None:
        """After the last reap: kill whatever the workers left behind (never blocks long)."""
        self._descendants.stop()

    def collect_orphans(self) -> None:
        """Reap exited grandchildren that reparented to the driver. Never blocks."""
        self._descendants.collect_orphans(self._pids)

    def spawn(self, slot: int, node: int, local_rank: int) -> WorkerProcess:
        """Fork a worker into slot. Raises SpawnError when fork() is refused."""
        process = self._next_process
        region = self._setup.region
        region.reset_worker(slot, process)
        try:
            pid = os.fork()
        except OSError as exc:
            raise SpawnError(f"could not start a worker process: {exc} (fork failed); lower "
                             "max_concurrency_per_instance or raise the process limit "
                             "(ulimit -u)") from exc
        self._next_process += 1
        if pid == 0:  # child: never returns
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
        return WorkerProcess(slot, process, node, local_rank, pid, pidfd)

    @staticmethod
    def kill(worker: WorkerProcess, because: str) -> None:
        """SIGKILL the worker's whole process group. Never blocks; reap() follows."""
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
    def terminate(worker: WorkerProcess) -> None:
        """SIGTERM the worker's process group (a clean stop: Ctrl-C, a limit exceeded)."""
        try:
            os.killpg(worker.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self, worker: WorkerProcess) -> ExitStatus | None:
        """The exit status if the worker has exited, else None. The caller unregisters the
        pidfd from its selector first, then this closes it."""
        pid, status, usage = os.wait4(worker.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._pidfds.discard(worker.pidfd)
        self._pids.discard(worker.pid)
        os.close(worker.pidfd)
        peak = usage.ru_maxrss * 1024  # Linux reports kilobytes
        if os.WIFSIGNALED(status):
            return ExitStatus(None, os.WTERMSIG(status), peak)
        return ExitStatus(os.waitstatus_to_exitcode(status), None, peak)
