"""Per-mini-batch digests of what a batch reads, so a resumed run can see a changed input.

    file identity   blake2b-128 of (absolute path bytes, size u64, mtime_ns i64)
    batch digest    one file, nothing else: that file's identity digest
                    otherwise: blake2b-128 of (plan salt, each file's digest, each piece's
                    numbers: byte / row ranges, partition key values)

Invariants: a digest is a pure function of the batch's files (path, size, mtime) and of
how the plan cuts them; batch b of an unchanged input gets the same digest on every run.
Digests are compared only index by index (batch b then against batch b), so two digests of
different shape never need to be told apart. Content is never read: like make, a file is
"changed" when its size or mtime is (mtime_ns is kept by copies that preserve it, e.g.
``mode: download`` with shutil.copy2).

Cost (measured on the 2-core dev machine, 100,000 one-file mini-batches, mtimes from the
C++ listing): ~0.1 s; a Python os.stat per file would have added ~0.35 s.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence

import numpy as np

try:
    # hashlib.blake2b is this very type (hashlib takes BLAKE2 from _blake2, never from
    # OpenSSL); importing hashlib also loads OpenSSL's _hashlib (~5 ms before the first
    # worker of `parajob run` can fork, for constructors parajob never calls).
    from _blake2 import blake2b as blake2b  # also runtime/fingerprint.py's
except ImportError:  # a Python built without it: hashlib says which hashes it has
    from hashlib import blake2b as blake2b

DIGEST_BYTES = 16
_IDENTITY = struct.Struct("<Qq")  # size, mtime_ns (fixed size: the path is the rest)


def empty_digests(n: int = 0) -> np.ndarray:
    """An (n, 16) uint8 array of zero digests."""
    return np.zeros((n, DIGEST_BYTES), dtype=np.uint8)


def stat_identities(paths: Sequence[str]) -> tuple[list[int], list[int]]:
    """(sizes, mtimes_ns) of paths, followed like open() does; a file that cannot be
    stat-ed gets mtime -1 (so it reads as changed, never as unchanged)."""
    sizes, mtimes = [], []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            sizes.append(0)
            mtimes.append(-1)
            continue
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    return sizes, mtimes


def file_digests(
    paths: Sequence[str], sizes: Iterable[int], mtimes_ns: Iterable[int]
) -> np.ndarray:
    """(n, 16) uint8: the identity digest of each file (see the module docstring)."""
    blake, pack = blake2b, _IDENTITY.pack
    # surrogateescape: names that are not UTF-8 come back to their own bytes (os.fsencode).
    joined = b"".join(
        [
            blake(
                p.encode("utf-8", "surrogateescape") + pack(s, m), digest_size=DIGEST_BYTES
            ).digest()
            for p, s, m in zip(paths, sizes, mtimes_ns, strict=True)
        ]
    )
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, DIGEST_BYTES).copy()


def grouped_digests(
    items: np.ndarray, bounds: np.ndarray, salt: bytes = b"", extras: Sequence[bytes] | None = None
) -> np.ndarray:
    """(n_batches, 16): batch b hashes items[bounds[b, 0]:bounds[b, 1]] (rows of 16 bytes
    or more), with salt and extras[b] (key values, piece numbers) when given. A batch of
    exactly one item with no salt and no extra is that item's digest itself (the common
    one-file mini-batch costs no second hash)."""
    n = len(bounds)
    out = empty_digests(n)
    if n == 0:
        return out
    lo = bounds[:, 0].astype(np.int64)
    hi = bounds[:, 1].astype(np.int64)
    single = np.zeros(n, dtype=bool)
    if not salt and extras is None and items.shape[1] == DIGEST_BYTES:
        single = hi - lo == 1
        out[single] = items[lo[single]]
    blake = blake2b
    for b in np.flatnonzero(~single).tolist():
        h = blake(salt, digest_size=DIGEST_BYTES)
        h.update(items[lo[b] : hi[b]].tobytes())
        if extras is not None:
            h.update(extras[b])
        out[b] = np.frombuffer(h.digest(), dtype=np.uint8)
    return out


def digest_of(*parts: bytes) -> bytes:
    """One 16-byte digest of several byte strings (each length-prefixed: unambiguous)."""
    h = blake2b(digest_size=DIGEST_BYTES)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()
