"""One owner per run folder: an exclusive lock, held for the whole life of a run.

    with RunFolder.claim(path) as folder:     # before anything in path is read or written
        ...                                    # record, downloads, steps, journal, merge

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``<run>/.parajob.lock``, which holds the owner's
pid for the message a second claimant gets ("run folder ... in use by pid N"). The kernel
drops a flock with the last reference to its *open file description*, so a SIGKILLed
driver frees its folder at once, and nothing stale is ever left to clean up by hand.

Who else could hold the description: the fd is O_CLOEXEC (no exec'd program inherits it),
and forked children do inherit it (fork copies descriptors, not locks, but a flock belongs
to the description they then share). Workers die with the driver (PDEATHSIG), but one that
outlived it by a moment would keep the folder locked, so every fork site calls
:func:`close_in_child` first (executors/local.py).

The lock file is never removed while the folder lives: unlinking it would let a process
that opened the old file and one that creates a new one both "hold" the lock.

Reusable by any front end (CLI today, the Python API of issue 9 later): claiming needs
only a path, and RunFolderInUse is a SpecError (exit code 2 in the CLI).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from parajob.errors import Diagnostic, SpecError

LOCK_NAME = ".parajob.lock"

# Lock fds this process holds; a forked child closes them (close_in_child).
_HELD: set[int] = set()


class RunFolderInUse(SpecError):
    """Another live process holds the run folder."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path, self.pid = path, pid
        owner = f"pid {pid}" if pid else "another process (its pid is not written yet)"
        stop = f"stop it with `kill {pid}`" if pid else "stop it"
        super().__init__(
            [
                Diagnostic(
                    str(path),
                    None,
                    None,
                    "",
                    f"run folder {path} in use by {owner}",
                    f"another parajob is running there: wait for it to end (or {stop}), then "
                    f"`parajob run --resume {path}` finishes it; or give another --run-dir "
                    "(run_dir=)",
                )
            ]
        )


@dataclass
class RunFolder:
    """A run folder this process holds exclusively until release() (or the with-block's end)."""

    path: Path
    created: bool  # this run made the folder (so it may remove it if it stays unused)
    _fd: int
    lock_created: bool = False  # this claim made the lock file (a refused run removes it)
    # Folders above path this claim made (deepest first): ./runs, --run-dir's new parents;
    # removed with the folder when it stays unused, so a refused run leaves none behind.
    made_above: tuple[Path, ...] = ()

    @classmethod
    @contextmanager
    def claim(cls, path: Path, create: bool = True) -> Iterator[RunFolder]:
        """Hold path for the with-block. create: make the folder (and parents) if missing.
        Raises RunFolderInUse when a live process holds it, SpecError when it cannot be
        made or opened. Blocks never: a held folder is refused at once."""
        folder = cls.acquire(path, create)
        try:
            yield folder
        finally:
            folder.release()

    @classmethod
    @contextmanager
    def claim_new(
        cls, base: Path, made_above: tuple[Path, ...] | None = None
    ) -> Iterator[RunFolder]:
        """Make a folder that did not exist (base, base-2, ...: make_unique_folder) and hold
        it for the with-block. made_above: the folders above base the caller made for it
        (default: those missing now, which make_unique_folder makes)."""
        above = missing_ancestors(base) if made_above is None else made_above
        folder = cls.acquire(make_unique_folder(base), created=True, made_above=above)
        try:
            yield folder
        finally:
            folder.release()

    @classmethod
    def acquire(
        cls,
        path: Path,
        create: bool = True,
        created: bool = False,
        made_above: tuple[Path, ...] = (),
    ) -> RunFolder:
        """claim() without the with-block: the caller calls release(). created: the
        caller made the folder just before (claim_new), and made_above above it."""
        path = path.resolve()
        try:
            if create and not path.exists():
                made_above = missing_ancestors(path)
                path.mkdir(parents=True, exist_ok=True)
                created = True
            lock_created = not os.path.lexists(path / LOCK_NAME)
            fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SpecError(
                [
                    Diagnostic(
                        str(path),
                        None,
                        None,
                        "--run-dir",
                        f"cannot use run folder {path}: {exc.strerror or exc}",
                    )
                ]
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunFolderInUse(path, pid) from None
            raise SpecError(
                [
                    Diagnostic(
                        str(path),
                        None,
                        None,
                        "--run-dir",
                        f"cannot lock run folder {path}: {exc.strerror}",
                    )
                ]
            ) from exc
        _HELD.add(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, created, fd, lock_created, made_above)

    def release(self) -> None:
        """Drop the lock (idempotent). The lock file stays (see the module docstring)."""
        if self._fd in _HELD:
            _HELD.discard(self._fd)
            os.close(self._fd)

    def discard_if_unused(self) -> None:
        """Remove the folder if this claim made it and nothing but the lock file is in it
        (a run refused before it started leaves no empty folder behind), or else the lock
        file if this claim made it (``--run-dir`` naming a folder of the user's, even the
        input: refused, it is left as it was), then release."""
        try:
            if self.created and {p.name for p in self.path.iterdir()} == {LOCK_NAME}:
                (self.path / LOCK_NAME).unlink()
                self.path.rmdir()
                for folder in self.made_above:
                    folder.rmdir()  # OSError once one is not empty: another run's, keep it
            elif self.lock_created:
                (self.path / LOCK_NAME).unlink()
        except OSError:
            pass  # someone else wrote there meanwhile: keep it
        self.release()


def missing_ancestors(path: Path) -> tuple[Path, ...]:
    """The folders above path that do not exist, deepest first (what mkdir(parents=True)
    of path would make besides path)."""
    missing = []
    for parent in path.absolute().parents:
        if parent.exists():
            break
        missing.append(parent)
    return tuple(missing)


def make_unique_folder(base: Path) -> Path:
    """Create base, or base-2, base-3, ... : the first that did not exist. Atomic (mkdir
    without exist_ok), so two runs started in the same second never share a folder."""
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir()
            return candidate.resolve()
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        except FileNotFoundError:  # a refused run of another process removed ./runs just now
            base.parent.mkdir(parents=True, exist_ok=True)


def close_in_child() -> None:
    """In a child just forked from a process holding run folders: close their lock fds, so
    that the child, should it outlive its parent, does not keep the folders locked."""
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
