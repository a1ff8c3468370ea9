"""What a run was started on: its plan's per-mini-batch digests and its code folder.

The journal (runtime/journal.py) stores a :class:`RunFingerprint` when a run starts;
``--resume`` computes one again and :func:`first_change` names the first difference, so a
resumed run never mixes rows of an old input or old code with new ones:

    plan    (n_batches, 16) digests from BatchPlan.fingerprints(): batch b is unchanged
            when its digest at index b is the same
    code    blake2b-128 of every file under task.code: sorted '/'-separated relative
            paths and their bytes; __pycache__, *.pyc, .git and the run folder itself
            (``code: ./`` with ``./runs``) are left out, as in the command step's snapshot

Serialised form (little-endian): n_items u64, n_batches u64, code digest (16 bytes),
manifest length u64, the manifest (JSON [[relpath, hex digest], ...]; relpaths that are
not UTF-8 keep their bytes through JSON's \\udcXX escapes), then n_batches x 16 bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parajob.data.batch_plan import BatchPlan
from parajob.data.fingerprints import DIGEST_BYTES

_HEAD = struct.Struct("<QQ16sQ")
SKIPPED_NAMES = frozenset({"__pycache__", ".git"})


class FingerprintError(ValueError):
    """Stored fingerprint bytes that do not parse (a damaged journal)."""


@dataclass(frozen=True)
class CodeFingerprint:
    """Content digests of the files under task.code, by '/'-separated relative path."""

    files: dict[str, str] = field(default_factory=dict)  # relpath -> hex blake2b-128

    @property
    def digest(self) -> bytes:
        h = hashlib.blake2b(digest_size=DIGEST_BYTES)
        for rel in sorted(self.files):
            h.update(f"{rel}\0{self.files[rel]}\0".encode("utf-8", "surrogateescape"))
        return h.digest()

    def first_change(self, now: CodeFingerprint) -> str | None:
        """The first relative path (in sorted order) that was changed, added or removed
        between self (then) and now, with what happened; None when equal."""
        for rel in sorted(self.files.keys() | now.files.keys()):
            then_digest, now_digest = self.files.get(rel), now.files.get(rel)
            if then_digest != now_digest:
                what = ("was added" if then_digest is None else "was removed"
                        if now_digest is None else "changed")
                return f"{rel} {what}"
        return None


def code_fingerprint(code_dir: Path, run_dir: Path | None = None) -> CodeFingerprint:
    """Hash every file under code_dir (following symlinks to files, as imports do).

    Raises OSError for a file that cannot be read (the caller reports it as bad input).
    """
    skip = run_dir.resolve() if run_dir is not None else None
    files: dict[str, str] = {}
    root = code_dir.resolve()
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_NAMES
                         and (skip is None or Path(folder, d).resolve() != skip))
        for name in names:
            if name.endswith(".pyc"):
                continue
            path = Path(folder, name)
            if not path.is_file():  # a broken symlink, a socket: nothing an import reads
                continue
            rel = path.relative_to(root).as_posix()
            h = hashlib.blake2b(digest_size=DIGEST_BYTES)
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - f is this loop's
                    h.update(chunk)
            files[rel] = h.hexdigest()
    return CodeFingerprint(files)


@dataclass(frozen=True)
class RunFingerprint:
    """A plan's per-batch digests, its item count and the code folder's digests."""

    batches: np.ndarray  # (n_batches, 16) uint8
    n_items: int
    code: CodeFingerprint

    @property
    def n_batches(self) -> int:
        return int(self.batches.shape[0])

    @classmethod
    def of(cls, plan: BatchPlan, code_dir: Path, run_dir: Path | None = None) -> RunFingerprint:
        digests = np.ascontiguousarray(plan.fingerprints(), dtype=np.uint8)
        assert digests.shape == (plan.n_batches, DIGEST_BYTES), digests.shape
        return cls(digests, plan.n_items, code_fingerprint(code_dir, run_dir))

    def to_bytes(self) -> bytes:
        manifest = json.dumps(sorted(self.code.files.items())).encode("ascii")
        return (_HEAD.pack(self.n_items, self.n_batches, self.code.digest, len(manifest))
                + manifest + self.batches.tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> RunFingerprint:
        try:
            n_items, n_batches, code_digest, length = _HEAD.unpack_from(data, 0)
            start = _HEAD.size + length
            files = dict(json.loads(data[_HEAD.size:start].decode("ascii")))
            batches = np.frombuffer(data, np.uint8, n_batches * DIGEST_BYTES, start)
        except (struct.error, ValueError, TypeError) as exc:
            raise FingerprintError(f"damaged fingerprint: {exc}") from exc
        code = CodeFingerprint({str(k): str(v) for k, v in files.items()})
        if code.digest != code_digest:
            raise FingerprintError("damaged fingerprint: the code manifest does not match")
        return cls(batches.reshape(n_batches, DIGEST_BYTES).copy(), int(n_items), code)

    def unchanged_batches(self, now: RunFingerprint) -> np.ndarray:
        """Bool per batch of ``now``: same index, same digest as then (and the same code:
        a code change leaves nothing unchanged)."""
        same = np.zeros(now.n_batches, dtype=bool)
        if self.code.digest != now.code.digest:
            return same
        n = min(self.n_batches, now.n_batches)
        same[:n] = (self.batches[:n] == now.batches[:n]).all(axis=1)
        return same


@dataclass(frozen=True)
class Change:
    """The first difference between a run's fingerprint and the input's now."""

    message: str
    n_changed: int  # mini-batches that would run again with --rerun-changed


def first_change(then: RunFingerprint, now: RunFingerprint, plan: BatchPlan,
                 code_dir: Path) -> Change | None:
    """None when now equals then; else what changed first: a code file, then a batch."""
    code = then.code.first_change(now.code)
    if code is not None:
        return Change(f"task.code file {code} since the run started ({code_dir}); results of "
                      "the old code cannot be mixed with the new", now.n_batches)
    same = then.unchanged_batches(now)
    if same.all() and then.n_batches == now.n_batches:
        return None
    counts = ""
    if then.n_batches != now.n_batches or then.n_items != now.n_items:
        counts = (f" (the run was planned as {then.n_batches} mini-batches of {then.n_items} "
                  f"items, the input now gives {now.n_batches} of {now.n_items})")
    n_changed = int((~same).sum())
    if n_changed == 0:  # only batches at the end are gone
        return Change(f"the input changed since the run started{counts}: mini-batches "
                      f"{now.n_batches} to {then.n_batches - 1} are gone", 0)
    first = int(np.flatnonzero(~same)[0])
    what = ("it is new" if first >= then.n_batches else
            "its files, their sizes or modification times, or its byte or row ranges differ")
    return Change(f"mini-batch {first} changed since the run started{counts}: {what} "
                  f"({n_changed} of {now.n_batches} mini-batches changed); now it is "
                  f"{plan.describe(first)}", n_changed)
