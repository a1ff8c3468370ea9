"""No process outlives its job: finding and killing every descendant of a step's workers.

Workers die with the driver (PR_SET_PDEATHSIG, runtime/worker.py) and are each their own
process group, but what user code starts (a helper server from init(), a setsid'd daemon
from run()) is neither: it must be found some other way, both when the job ends and when
the driver itself is SIGKILLed. Three marks, one per way a process can get away:

    driver (child subreaper, maps memfd "parajob-run-<token>")
      |-- janitor   forked first: own process group, SIGINT ignored, every fd closed
      |             but a pidfd of the driver and the read end of the goodbye pipe
      |-- worker    forked after: inherits the mapping, exports PARAJOB_RUN_TOKEN=<token>
            |-- fork() only (a daemon, setsid or not) ......... keeps the memfd mapping
            |-- exec()'d (subprocess.Popen, os.system) ........ inherits the token variable
            '-- its parent exits (double fork) ................ reparents to the driver,
                                                                 the nearest subreaper

A *sweep* SIGKILLs every process (but the driver and the janitor) whose
/proc/<pid>/environ holds the token or whose /proc/<pid>/maps holds the memfd, then
(driver only) the subtrees of the driver's children that were not there when the step
started and are outside the driver's own process group (orphans: workers are each their
own group, and so are their descendants unless they move), and repeats until a pass finds
nothing. The driver's mapping is MADV_DONTFORK and each worker maps the memfd itself, so
that a host program's own children (parajob.run in a process that forks or spawns for
itself meanwhile) carry no mark and stay in its group: they are never swept.

The driver sweeps at the end of the step (normal end, a limit exceeded, Ctrl-C, an
exception), then says goodbye to the janitor;
the janitor sweeps when the driver's pidfd becomes readable without a goodbye (the driver
died, SIGKILL included), then exits. The janitor's sweep also kills every process in the
process group of any worker the step forked (the driver writes each worker's pid, its
group id, down the goodbye pipe right after the fork): a child exec'd with an emptied
environment (``Popen(..., env={})``) carries neither mark, but stays in its worker's group
unless it moves out.

Why only members started after the janitor, and no killpg: a group id cannot be reused
while a member lives, but once a group's last member is gone its number may be taken by
an unrelated process group; the start-time filter excludes every process older than the
job, so only a pid that wrapped around *during* the job (pid_max is 4M on most systems)
could be mistaken for a worker's group.

Why these and not a cgroup: a cgroup needs a delegated cgroup v2 tree, which containers and
CI runners usually lack; the token, the mapping and the group need nothing. What they
miss: a process exec'd with a scrubbed environment *and* moved out of its worker's process
group (setsid, a new session) *while* the driver is already dead (the driver-side sweep
still finds it: it is in the driver's tree). Making each worker a subreaper would not help:
a SIGKILLed worker cannot kill its descendants, which then reparent upward anyway. The
token is a fresh uuid4 per step, so sweeps never touch another run's processes.

Zombies: as subreaper the driver becomes the parent of orphaned grandchildren, so it reaps
the ones that exit during the run (:meth:`Descendants.collect_orphans`, at checkpoint
cadence), which init would otherwise have done.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import os
import select
import signal
import time
import uuid
from collections.abc import Iterable, Iterator, Set

from parajob import terminal

RUN_TOKEN_ENV = "PARAJOB_RUN_TOKEN"
_worker_mark: mmap.mmap | None = None  # in a worker: its own mapping of the step's memfd
_WALL = 0x40000000  # __WALL: wait for any child, whatever signal it reports its end with
SWEEP_DEADLINE_S = 10.0  # a fork bomb could outrun one pass; each pass kills what it saw

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_GOODBYE = b"bye"


def _prctl(option: int, arg: int | ctypes.c_int | ctypes.Array[ctypes.c_int] | object) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0))


class Descendants:
    """The marks of one step's processes, its janitor, and the sweeps. Driver-only.

    Call :meth:`start` before forking any worker (and before any thread: it forks the
    janitor), :meth:`child_setup` first thing in each forked worker, :meth:`stop` once at
    the end. Every method is best effort: a missing feature (no prctl, fork refused) costs
    only that mark, never the job.
    """

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self._mark: mmap.mmap | None = None
        self._mark_fd = -1  # the memfd, kept open until stop(): each worker maps it itself
        self._janitor_pid = 0
        self._goodbye_fd = -1
        self._was_subreaper = 0
        self._children_at_start: set[int] = set()
        self._since = 0  # boot-time clock ticks: no process started earlier is ours

    @property
    def janitor_pid(self) -> int:
        return self._janitor_pid

    def start(self) -> None:
        """Become a subreaper, map the memfd mark, fork the janitor. Never raises."""
        was = ctypes.c_int(0)
        _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was))
        self._was_subreaper = was.value
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        try:
            fd = os.memfd_create(f"parajob-run-{self.token}", os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, mmap.PAGESIZE)
                self._mark = mmap.mmap(fd, mmap.PAGESIZE)
                # Not into every fork of this process: a host's own fork() (multiprocessing,
                # from another thread, while a parajob.run goes on) must not carry the mark
                # and be swept with the workers. Each worker maps it itself (child_setup).
                self._mark.madvise(mmap.MADV_DONTFORK)
                self._mark_fd, fd = fd, -1
            finally:
                if fd >= 0:
                    os.close(fd)
        except (OSError, AttributeError):  # AttributeError: no madvise / MADV_DONTFORK
            self._mark = None
        self._children_at_start = set(_children(os.getpid()))
        self._fork_janitor()
        self._since = _start_ticks(self._janitor_pid) if self._janitor_pid else 0

    def child_setup(self) -> None:
        """In a freshly forked worker: drop the janitor's pipe, export the token."""
        if self._goodbye_fd >= 0:
            os.close(self._goodbye_fd)
        if self._mark_fd >= 0:  # the driver's mapping is not inherited (MADV_DONTFORK)
            global _worker_mark
            try:
                _worker_mark = mmap.mmap(self._mark_fd, mmap.PAGESIZE)
            except OSError:
                pass
            os.close(self._mark_fd)
        # Appended, so that a parajob run inside a worker still carries the outer token.
        outer = os.environ.get(RUN_TOKEN_ENV, "")
        os.environ[RUN_TOKEN_ENV] = f"{outer} {self.token}".strip()

    def spawned(self, pid: int) -> None:
        """Tell the janitor a worker's pid (its process group id), right after the fork:
        should the driver die, the janitor kills that group's members too."""
        if self._goodbye_fd >= 0:
            try:
                os.write(self._goodbye_fd, b"%d\n" % pid)  # < PIPE_BUF: one atomic write
            except OSError:
                pass

    def collect_orphans(self, known: Iterable[int]) -> None:
        """Reap exited orphans that reparented to the driver (not workers: their pidfds
        are the driver's to wait on). Never blocks."""
        skip = set(known) | self._children_at_start | {self._janitor_pid}
        for pid in _children(os.getpid()):
            if pid not in skip:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def stop(self) -> None:
        """Sweep every descendant of the step's workers, dismiss the janitor, stop being a
        subreaper. Call after the workers were reaped. Blocks at most SWEEP_DEADLINE_S."""
        spare = {os.getpid(), self._janitor_pid}
        deadline = time.monotonic() + SWEEP_DEADLINE_S
        while time.monotonic() < deadline:
            victims = set(_marked(self.token, spare, self._since)) | self._new_subtrees(spare)
            if not victims:
                break
            for pid in victims:
                _kill(pid)
            self.collect_orphans(())
        self.collect_orphans(())
        if self._goodbye_fd >= 0:
            try:
                os.write(self._goodbye_fd, _GOODBYE + b"\n")
            except OSError:
                pass
            os.close(self._goodbye_fd)
            self._goodbye_fd = -1
        if self._janitor_pid:
            try:
                os.waitpid(self._janitor_pid, 0)
            except ChildProcessError:
                pass
            self._janitor_pid = 0
        if self._mark is not None:
            self._mark.close()
            self._mark = None
        if self._mark_fd >= 0:  # later forks (a next step's workers) must not map it
            os.close(self._mark_fd)
            self._mark_fd = -1
        _prctl(_PR_SET_CHILD_SUBREAPER, self._was_subreaper)

    def _new_subtrees(self, spare: set[int]) -> set[int]:
        """Every process under a stray child of the driver that was not there at start: an
        orphan that reparented to us (with a scrubbed environment, say), and its
        descendants."""
        return _subtrees([p for p in _strays(self._children_at_start) if p not in spare])

    def _fork_janitor(self) -> None:
        driver = os.getpid()
        try:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        except OSError:
            return
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            terminal.echo(
                f"parajob: warning: could not start the process that cleans up "
                f"after a killed driver ({exc}); processes that run() starts may "
                "outlive a SIGKILLed driver",
                err=True,
            )
            return
        if pid == 0:
            _janitor_main(driver, read_fd, self.token)  # never returns
        os.close(read_fd)
        self._janitor_pid = pid
        self._goodbye_fd = write_fd


@contextlib.contextmanager
def orphans_killed() -> Iterator[None]:
    """Inside, this process is a child subreaper: what its children start and leave behind
    (a daemon in a new session, ``setsid cmd &``) reparents to it instead of to init. On the
    way out, every child that was not there on the way in, with everything under it, is
    SIGKILLed and reaped, until a pass finds none (at most SWEEP_DEADLINE_S), and the
    previous subreaper setting comes back. For the import check, whose probes are the only
    children started inside: call it once they have all been reaped."""
    was = ctypes.c_int(0)
    _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was))
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    before = set(_children(os.getpid()))
    try:
        yield
    finally:
        deadline = time.monotonic() + SWEEP_DEADLINE_S
        while time.monotonic() < deadline:
            # A zombie is dead already: reaped here if it can be, never waited for (a
            # zombie that waitpid() would not reap kept this loop busy for the whole
            # deadline, 10 s added to every `parajob validate`).
            new = [p for p in _strays(before) if not _reaped(p)]
            if not new:
                break
            for pid in _subtrees(new):  # all at once: killing one orphans the others to us
                _kill(pid)
            time.sleep(0.001)  # SIGKILL is delivered asynchronously
        _prctl(_PR_SET_CHILD_SUBREAPER, was.value)


def _reaped(pid: int) -> bool:
    """Whether pid is dead: reaped now, or a zombie (its stat state is Z) that waitpid()
    would not reap."""
    # The state is read before the waitpid(), not after: a child that died between the
    # two was seen as a zombie, not reaped, and skipped for good: an import check's
    # guardian, SIGKILLed with its probe's group a moment before, stayed a zombie of the
    # host (~1 run in 80 under load: tests/test_api_hygiene.py, issue 9).
    zombie = _is_zombie(pid)
    try:
        if os.waitpid(pid, os.WNOHANG | _WALL)[0] == pid:
            return True
    except ChildProcessError:
        pass
    return zombie


def _janitor_main(driver: int, read_fd: int, token: str) -> None:
    """The janitor: wait for the driver's goodbye or its death; on death, sweep. Tiny on
    purpose: it runs in a copy of the driver and must not touch the driver's state.

    Death shows twice: the driver's pidfd becomes readable, and the goodbye pipe reaches
    EOF (only the driver holds its write end: workers close it, exec closes it). The pipe
    alone suffices where pidfd_open is missing (Linux < 5.3)."""
    code = 0
    try:
        os.setpgid(0, 0)  # Ctrl-C and a killpg of the driver's group do not reach it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        gc.disable()  # collections would copy the driver's pages it shares (copy-on-write)
        since = _start_ticks(os.getpid())
        try:
            pidfd = os.pidfd_open(driver)
        except OSError:
            pidfd = -1
        keep = {read_fd, pidfd} - {-1}
        # Not even the terminal: a `parajob run | head` must not wait for the janitor's EOF.
        null = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        for name in os.listdir("/proc/self/fd"):  # the driver's files are none of its business
            if int(name) > 2 and int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        if os.getppid() != driver:  # the driver died before we looked: sweep now
            _sweep_for(token, {os.getpid()}, since)
            os._exit(0)
        poller = select.poll()
        for fd in keep:
            poller.register(fd, select.POLLIN)
        groups: set[int] = set()  # the workers' pids, each its own group's id
        pending = b""
        while True:
            events = dict(poller.poll())
            data = os.read(read_fd, 4096) if read_fd in events else b""
            *lines, pending = (pending + data).split(b"\n")
            if _GOODBYE in lines:
                break  # goodbye: the driver swept and lives on
            groups.update(int(line) for line in lines if line.isdigit())
            if data:
                continue
            if events:  # the pidfd fired, or the pipe reached EOF: the driver is gone
                _sweep_for(token, {os.getpid(), driver}, since, groups)
                break
    except BaseException:  # noqa: BLE001 - never run the driver's code after fork
        code = 1
    os._exit(code)


def _sweep_for(token: str, spare: set[int], since: int, groups: Set[int] = frozenset()) -> None:
    deadline = time.monotonic() + SWEEP_DEADLINE_S
    while time.monotonic() < deadline:
        victims = list(_marked(token, spare, since, groups))
        if not victims:
            return
        for pid in victims:
            _kill(pid)


def _marked(
    token: str, spare: set[int], since: int, groups: Set[int] = frozenset()
) -> Iterable[int]:
    """Live processes started at or after `since` (clock ticks since boot, as in
    /proc/<pid>/stat) that are in one of `groups` or carry the token in their environment
    or the memfd in their mappings; unreadable ones (another user's) are skipped. The
    start-time filter keeps a sweep from reading the (large) maps of every older process on
    the machine, and from touching a group whose id was reused before the job started."""
    env_mark = token.encode()
    map_mark = f"parajob-run-{token}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in spare:
            continue
        pid = int(name)
        if since and _start_ticks(pid) < since:
            continue
        if groups and _group(pid) in groups:
            if not _is_zombie(pid):
                yield pid
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if env_mark in f.read():
                    if not _is_zombie(pid):
                        yield pid
                    continue
            with open(f"/proc/{pid}/maps", "rb") as f:
                if map_mark in f.read() and not _is_zombie(pid):
                    yield pid
        except OSError:
            continue


def _strays(before: Set[int]) -> list[int]:
    """Children of this process, not in ``before``, outside this process's own process
    group: orphans of our workers or probes (each started in its own group, which their
    descendants keep unless they move to a new one) that reparented to us, the subreaper.
    A child the host program started itself meanwhile (subprocess.Popen, a fork from
    another thread) stays in our group and is never taken for one."""
    ours = os.getpgid(0)
    return [p for p in _children(os.getpid()) if p not in before and _group(p) != ours]


def _subtrees(tops: list[int]) -> set[int]:
    """The live (not zombie) processes among tops and their descendants."""
    found: set[int] = set()
    while tops:
        pid = tops.pop()
        if pid not in found and not _is_zombie(pid):
            found.add(pid)
            tops.extend(_children(pid))
    return found


def _children(pid: int) -> list[int]:
    """Direct children of pid (every thread's), from /proc/<pid>/task/*/children."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when
    pid is gone. The name is skipped by its last ')': it may hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def _stat_number(pid: int, index: int) -> int:
    fields = _stat_fields(pid)
    try:
        return int(fields[index]) if fields is not None else 0
    except (ValueError, IndexError):
        return 0


def _start_ticks(pid: int) -> int:
    """When pid started, in clock ticks since boot (field 22 of /proc/<pid>/stat); 0 when
    it is gone."""
    return _stat_number(pid, 19)


def _group(pid: int) -> int:
    """pid's process group id (field 5 of /proc/<pid>/stat); 0 when it is gone."""
    return _stat_number(pid, 2)


def _is_zombie(pid: int) -> bool:
    """Whether pid is dead but not reaped (state Z or X), or gone altogether."""
    fields = _stat_fields(pid)
    return fields is None or fields[:1] in ([b"Z"], [b"X"])


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
