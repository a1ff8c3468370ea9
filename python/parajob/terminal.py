"""Writing to the terminal without depending on it (issue 8: "the job never depends on the
terminal").

A job's results are its output files and its logs; what reaches the terminal (progress,
warnings, the closing summary) is a courtesy. So a terminal write that fails is dropped and
the job goes on:

* ``parajob run ... 2>&1 | head -1``: ``head`` exits after one line and every later write
  gets EPIPE. Python ignores SIGPIPE, so the write raises BrokenPipeError instead of killing
  the process; :func:`write` catches it, and sends that descriptor to ``/dev/null`` (the
  recipe of the Python docs' ``signal`` page, "Note on SIGPIPE"): otherwise the
  interpreter's own flush of ``sys.stdout`` at exit fails again, prints "Exception ignored
  ... BrokenPipeError" and turns the exit status into 120.
* ``parajob run ... 2>&-`` (a closed descriptor): Python starts with ``sys.stderr`` None,
  and the first file the driver opens would get descriptor 2, where anything that writes
  to "stderr" (a forked worker before it redirects, faulthandler, a C++ message) would
  land in it. :func:`ensure_standard_streams` puts ``/dev/null`` on 0, 1 and 2 first.
* A text that the stream cannot encode (a file name that is not UTF-8, passed through with
  ``os.fsdecode`` semantics) is written with ``backslashreplace`` rather than raising.

A library caller (``parajob.run(..., quiet=True)``) gets no terminal at all: inside
:func:`muted` (per thread and context: a ContextVar, so a quiet run in one thread does not
silence a run in another) :func:`echo` hands its text to the ``parajob`` logger instead,
which has a NullHandler: it shows only where the host configured logging.

Invariant: nothing here raises for a broken terminal, and a stream that failed once is not
written again (its descriptor now points at ``/dev/null``).
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

__all__ = ["echo", "ensure_standard_streams", "live_line", "muted", "write"]

_muted: ContextVar[bool] = ContextVar("parajob_terminal_muted", default=False)
_log = logging.getLogger("parajob")
_log.addHandler(logging.NullHandler())  # a library: silent unless the host sets up logging

# Streams whose writes failed: their descriptor is /dev/null now, nothing more is written.
_dropped: weakref.WeakSet[TextIO] = weakref.WeakSet()

# The terminal stream a progress line is being redrawn on (runtime/progress.py), if any.
_live_stream: TextIO | None = None
CLEAR_LINE = "\r\x1b[2K"  # back to the line's start, erase it (ECMA-48 EL 2)


def live_line(stream: TextIO | None) -> None:
    """Say that a progress line is drawn in place on ``stream`` (None: no longer). Text
    written there meanwhile first erases that line, so a warning gets a line of its own;
    the progress line is drawn again below it at its next redraw."""
    global _live_stream
    _live_stream = stream


def ensure_standard_streams() -> None:
    """Give descriptors 0, 1 and 2 a file (``/dev/null``) when they are closed, and
    ``sys.stdin``/``sys.stdout``/``sys.stderr`` a stream where Python left None. Call once,
    first thing, before any file is opened for the job."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = _null_stream(1)
    if sys.stderr is None:
        sys.stderr = _null_stream(2)


def _null_stream(fd: int) -> TextIO:
    stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    _dropped.add(stream)
    return stream


@contextmanager
def muted() -> Iterator[None]:
    """Within the block (this thread/context only), :func:`echo` writes to the ``parajob``
    logger (warning level) instead of the terminal."""
    token = _muted.set(True)
    try:
        yield
    finally:
        _muted.reset(token)


def echo(text: str, *, err: bool = False) -> bool:
    """``text`` and a newline to stdout (``err``: stderr); False when it was dropped
    (or, inside :func:`muted`, logged instead)."""
    if _muted.get():
        _log.warning("%s", text)
        return False
    return write(sys.stderr if err else sys.stdout, text + "\n")


def write(stream: TextIO | None, text: str) -> bool:
    """Write and flush ``text``; False when the stream is gone (then it stays dropped)."""
    if stream is None or stream in _dropped:
        return False
    if stream is _live_stream and text:
        text = CLEAR_LINE + text
    if not text.isascii():  # lone surrogates (os.fsdecode'd names) as job_result.txt shows them
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        try:
            stream.write(text)
        except UnicodeEncodeError:  # e.g. a surrogate from a non-UTF-8 file name
            encoding = getattr(stream, "encoding", None) or "utf-8"
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        stream.flush()
    except (OSError, ValueError):  # EPIPE, EBADF, EIO, ENOSPC; ValueError: a closed file
        _drop(stream)
        return False
    return True


def _drop(stream: TextIO) -> None:
    _dropped.add(stream)
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):  # not a real file (StringIO) or closed
        return
    if fd not in (1, 2):
        return
    # What the stream still buffers is flushed at exit into /dev/null, not into EPIPE.
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
