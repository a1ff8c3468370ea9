"""Type stubs for parajob._core, the compiled core (one section per concept)."""

import os
from typing import Any

import numpy as np
import numpy.typing as npt

# Until every concept has its section here, names without one resolve to Any, so a
# partial stub cannot make mypy reject correct callers (PEP 484 partial stubs).
def __getattr__(name: str) -> Any: ...

# --- listing ---

class FileList:
    """The regular files under a folder, sorted by relative path (byte-wise), with sizes.

    Immutable, plain memory: safe to read from threads and from processes forked after it
    was built. Names that are not valid UTF-8 decode as os.fsdecode does (surrogateescape).
    """

    @property
    def root(self) -> str:
        """Absolute, lexically normalised root folder that was listed."""
    @property
    def total_bytes(self) -> int: ...
    def __len__(self) -> int: ...
    def path(self, i: int) -> str:
        """Absolute path of file i (negative i counts from the end); IndexError outside."""
    def relpath(self, i: int) -> str:
        """Path of file i relative to root, '/'-separated."""
    def size(self, i: int) -> int:
        """Size of file i in bytes (of the target, for a symlink)."""
    def paths(self, start: int, stop: int) -> list[str]:
        """Absolute paths of files [start, stop), clamped like a slice."""
    def sizes(self) -> npt.NDArray[np.uint64]:
        """A copy of all sizes, in listing order."""

def list_files(
    root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    follow_symlinks: bool = True,
    *,
    threads: int = 0,
) -> FileList:
    """List the regular files under root recursively, sorted by relative path (byte-wise).

    Symlinks to files are listed under the link's path with the target's size; symlinks to
    folders are followed unless they loop back to an ancestor; broken symlinks are skipped;
    with follow_symlinks=False every symlink is skipped. threads: 0 = one per usable CPU
    (at most 16), all joined before returning. Releases the GIL while it walks.

    Raises FileNotFoundError (root missing), NotADirectoryError (root not a folder),
    PermissionError (an unreadable folder or entry, named), OSError (anything else).
    """

# --- end listing ---
