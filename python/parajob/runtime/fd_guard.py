"""Keeping user code away from parajob's file descriptors in a worker.

User code runs in the worker's process and may write to, close or dup2 over any descriptor
it can name (``for fd in range(3, 256): os.write(fd, ...)``, a daemonising helper that
closes or redirects "all" fds). Two defences, both outside the per-mini-batch hot path:

* :func:`close_inherited` — right after fork, a worker closes every descriptor the driver
  opened (the journal, the logs, the epoll, the janitor's pipe: CLOEXEC, as Python opens
  everything, PEP 446) except the few it needs, so garbage written by run() cannot reach
  the driver's files. Descriptors parajob's own parent handed down (not CLOEXEC) stay.
* :func:`move_high` — the descriptors a worker writes its results through (its spool, its
  part of processed_mini-batches.csv, the driver's eventfd) are moved to numbers at or
  above HIGH_FD (raising the soft RLIMIT_NOFILE to make room when the hard limit allows,
  else the top of the table), with O_CLOEXEC so that nothing exec'd inherits them.

``parajob run`` calls :func:`grow_table` first thing, while it has one thread: the room
move_high() needs is then made before numpy's threads exist (growing a table that threads
share waits for an RCU grace period, milliseconds before the first worker can fork).

What a program finds by listing /proc/self/fd is still reachable: the spool records carry
a CRC32 (runtime/spool.py) and the driver discards a record that does not validate.
"""

from __future__ import annotations

import fcntl
import os
import resource
from collections.abc import Iterable

HIGH_FD = 10_000
_RESERVE = 256  # numbers kept free above our descriptors for the process's own use


def _floor() -> int:
    """The lowest number move_high() uses: HIGH_FD where the limit allows, else a high one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = HIGH_FD + _RESERVE
    if (
        soft != resource.RLIM_INFINITY
        and soft < want
        and (hard == resource.RLIM_INFINITY or hard >= want)
    ):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= want:
        return HIGH_FD
    return max(3, soft - _RESERVE)


def move_high(fd: int) -> int:
    """fd moved to a high number, O_CLOEXEC; the old number is closed. Falls back to fd
    itself (still working, only less protected) when no high number can be had."""
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _floor())
    except OSError:
        return fd
    os.close(fd)
    return high


def grow_table() -> None:
    """Make room in this process's descriptor table for move_high()'s numbers now. For a
    process that has one thread yet (``parajob run`` before it imports numpy): the kernel
    grows a table shared by several threads only after an RCU grace period (5-20 ms seen
    here; numpy's BLAS threads make the driver such a process), never shrinks one, and
    move_high() later finds the room made. The soft RLIMIT_NOFILE is put back as it was
    (only move_high() raises it, as before: a pipeline of command steps only never sees it
    raised). Best effort: a failure changes nothing."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        fd = os.eventfd(0, os.EFD_CLOEXEC)
    except OSError:
        return
    try:
        os.close(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _floor()))
    except OSError:
        pass
    finally:
        os.close(fd)
        if resource.getrlimit(resource.RLIMIT_NOFILE) != limits:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)  # lowering: always allowed
            except (OSError, ValueError):
                pass


def close_inherited(keep: Iterable[int]) -> None:
    """Close every CLOEXEC descriptor >= 3 but those in keep. For a freshly forked worker
    only: Python objects of the driver that own these descriptors are never used there."""
    spare = set(keep)
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd < 3 or fd in spare:
            continue
        try:
            if fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                os.close(fd)
        except OSError:  # the listing's own descriptor, already closed
            continue
