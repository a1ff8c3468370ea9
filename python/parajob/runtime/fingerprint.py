"""What a run was started on: its plan's per-mini-batch digests, its code folder and the
step settings that change what run() returns or how rows are written.

The journal (runtime/journal.py) stores a :class:`RunFingerprint` when a run starts;
``--resume`` computes one again and :func:`first_change` names the first difference, so a
resumed run never mixes rows of an old input or old code with new ones:

    plan    (n_batches, 16) digests from BatchPlan.fingerprints(): batch b is unchanged
            when its digest at index b is the same
    code    blake2b-128 of every file under task.code: sorted '/'-separated relative
            paths and their bytes; __pycache__, *.pyc, .git and the run folder itself
            (``code: ./`` with ``./runs``) are left out, as in the command step's snapshot
    settings  {field label: canonical text}: the bound argv, each environment variable,
            the entry script's name, the append_row target (job.step_settings); a
            difference leaves no batch unchanged, as a code change does

Serialised form (little-endian): n_items u64, n_batches u64, code digest (16 bytes),
manifest length u64, the manifest (JSON [[relpath, hex digest], ...]; relpaths that are
not UTF-8 keep their bytes through JSON's \\udcXX escapes), settings length u64, the
settings (JSON {label: text}), then n_batches x 16 bytes.

While a run goes, :class:`CodeWatch` notices an edited code folder cheaply: a stat
signature (relative path, size, mtime_ns per file) taken with the content hash, compared
again before a replacement worker imports the code; only when it differs are the contents
hashed again.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parajob.data.batch_plan import BatchPlan
from parajob.data.fingerprints import DIGEST_BYTES, blake2b

_HEAD = struct.Struct("<QQ16sQ")
_LENGTH = struct.Struct("<Q")
SKIPPED_NAMES = frozenset({"__pycache__", ".git"})


class FingerprintError(ValueError):
    """Stored fingerprint bytes that do not parse (a damaged journal)."""


StatSignature = tuple[tuple[str, int, int], ...]  # (relpath, size, mtime_ns) in walk order


@dataclass(frozen=True)
class CodeFingerprint:
    """Content digests of the files under task.code, by '/'-separated relative path.

    ``stat`` is the folder's stat signature taken while hashing, each file stat'ed before
    it was read (so a later edit always shows as a different signature); it is not stored
    in the journal and not compared."""

    files: dict[str, str] = field(default_factory=dict)  # relpath -> hex blake2b-128
    stat: StatSignature = field(default=(), compare=False)

    @property
    def digest(self) -> bytes:
        h = blake2b(digest_size=DIGEST_BYTES)
        for rel in sorted(self.files):
            h.update(f"{rel}\0{self.files[rel]}\0".encode("utf-8", "surrogateescape"))
        return h.digest()

    def first_change(self, now: CodeFingerprint) -> str | None:
        """The first relative path (in sorted order) that was changed, added or removed
        between self (then) and now, with what happened; None when equal."""
        for rel in sorted(self.files.keys() | now.files.keys()):
            then_digest, now_digest = self.files.get(rel), now.files.get(rel)
            if then_digest != now_digest:
                what = (
                    "was added"
                    if then_digest is None
                    else "was removed"
                    if now_digest is None
                    else "changed"
                )
                return f"{rel} {what}"
        return None


def _code_files(code_dir: Path, run_dir: Path | None) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relpath, entry) of every file an import could read under code_dir, in sorted
    order: files and symlinks to files; folders are entered unless they are symlinks (as
    os.walk does), a SKIPPED_NAMES folder or the run folder (by device and inode). One
    scandir per folder, no per-file syscall beyond what the caller asks of the entry."""
    try:
        st = run_dir.stat() if run_dir is not None else None
        skip = (st.st_dev, st.st_ino) if st is not None else None
    except OSError:  # no run folder yet: nothing to skip
        skip = None

    def walk(folder: str, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name in SKIPPED_NAMES:
                    continue
                info = entry.stat(follow_symlinks=False)
                if (info.st_dev, info.st_ino) != skip:
                    yield from walk(entry.path, f"{prefix}{entry.name}/")
            elif not entry.name.endswith(".pyc") and entry.is_file():
                # not is_file(): a broken symlink, a socket, a symlink to a folder
                yield f"{prefix}{entry.name}", entry

    yield from walk(str(code_dir.resolve()), "")


def stat_signature(code_dir: Path, run_dir: Path | None = None) -> StatSignature:
    """(relpath, size, mtime_ns) of the files under code_dir, in _code_files order; no
    file is read.

    A file that vanishes while listed counts as size -1 (a change, not an error)."""
    out = []
    for rel, entry in _code_files(code_dir, run_dir):
        try:
            st = entry.stat()
            out.append((rel, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((rel, -1, 0))
    return tuple(out)


def code_fingerprint(code_dir: Path, run_dir: Path | None = None) -> CodeFingerprint:
    """Hash every file under code_dir (following symlinks to files, as imports do).

    Raises OSError for a file that cannot be read (the caller reports it as bad input).
    """
    files: dict[str, str] = {}
    stats = []
    for rel, entry in _code_files(code_dir, run_dir):
        # stat before the read: an edit during the read changes the signature
        st = os.stat(entry.path)  # not entry.stat(): scandir may have cached it earlier
        stats.append((rel, st.st_size, st.st_mtime_ns))
        h = blake2b(digest_size=DIGEST_BYTES)
        with open(entry.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - f is this loop's
                h.update(chunk)
        files[rel] = h.hexdigest()
    return CodeFingerprint(files, tuple(stats))


class CodeWatch:
    """Whether task.code still holds the code a step started with (see the module doc).

    ``changed()`` costs one stat per file while nothing changed; a touched but identical
    file is hashed once and then accepted (its new signature is remembered)."""

    def __init__(self, code_dir: Path, run_dir: Path | None, start: CodeFingerprint) -> None:
        self.code_dir, self.run_dir, self.start = code_dir, run_dir, start
        self._signature = start.stat

    def changed(self) -> str | None:
        """None while the code is the start's; else the first changed file and what
        happened to it ("entry.py changed")."""
        signature = stat_signature(self.code_dir, self.run_dir)
        if signature == self._signature:
            return None
        try:
            now = code_fingerprint(self.code_dir, self.run_dir)
        except OSError as exc:
            return f"{exc.filename} cannot be read ({exc.strerror})"
        change = self.start.first_change(now)
        if change is None:
            self._signature = now.stat
        return change


@dataclass(frozen=True)
class RunFingerprint:
    """A plan's per-batch digests, its item count, the code folder's digests and the step
    settings (label -> canonical text; labels are field paths below jobs.<step>)."""

    batches: np.ndarray  # (n_batches, 16) uint8
    n_items: int
    code: CodeFingerprint
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def n_batches(self) -> int:
        return int(self.batches.shape[0])

    @classmethod
    def of(
        cls,
        plan: BatchPlan,
        code_dir: Path,
        run_dir: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> RunFingerprint:
        digests = np.ascontiguousarray(plan.fingerprints(), dtype=np.uint8)
        assert digests.shape == (plan.n_batches, DIGEST_BYTES), digests.shape
        return cls(digests, plan.n_items, code_fingerprint(code_dir, run_dir), dict(settings or {}))

    def to_bytes(self) -> bytes:
        manifest = json.dumps(sorted(self.code.files.items())).encode("ascii")
        settings = json.dumps(self.settings, sort_keys=True).encode("ascii")
        return (
            _HEAD.pack(self.n_items, self.n_batches, self.code.digest, len(manifest))
            + manifest
            + _LENGTH.pack(len(settings))
            + settings
            + self.batches.tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RunFingerprint:
        try:
            n_items, n_batches, code_digest, length = _HEAD.unpack_from(data, 0)
            start = _HEAD.size + length
            files = dict(json.loads(data[_HEAD.size : start].decode("ascii")))
            (length,) = _LENGTH.unpack_from(data, start)
            start += _LENGTH.size
            settings = dict(json.loads(data[start : start + length].decode("ascii")))
            start += length
            batches = np.frombuffer(data, np.uint8, n_batches * DIGEST_BYTES, start)
        except (struct.error, ValueError, TypeError) as exc:
            raise FingerprintError(f"damaged fingerprint: {exc}") from exc
        code = CodeFingerprint({str(k): str(v) for k, v in files.items()})
        if code.digest != code_digest:
            raise FingerprintError("damaged fingerprint: the code manifest does not match")
        return cls(
            batches.reshape(n_batches, DIGEST_BYTES).copy(),
            int(n_items),
            code,
            {str(k): str(v) for k, v in settings.items()},
        )

    def first_setting_change(self, now: RunFingerprint) -> str | None:
        """The first setting label (sorted) whose text differs, was added or was removed
        between self (then) and now, with what happened; None when equal. Values are not
        named: an environment variable may hold a secret."""
        for label in sorted(self.settings.keys() | now.settings.keys()):
            then_text, now_text = self.settings.get(label), now.settings.get(label)
            if then_text != now_text:
                return f"{label} " + (
                    "was added"
                    if then_text is None
                    else "was removed"
                    if now_text is None
                    else "changed"
                )
        return None

    def unchanged_batches(self, now: RunFingerprint) -> np.ndarray:
        """Bool per batch of ``now``: same index, same digest as then (and the same code
        and settings: a change of either leaves nothing unchanged)."""
        same = np.zeros(now.n_batches, dtype=bool)
        if self.code.digest != now.code.digest or self.settings != now.settings:
            return same
        n = min(self.n_batches, now.n_batches)
        same[:n] = (self.batches[:n] == now.batches[:n]).all(axis=1)
        return same


@dataclass(frozen=True)
class Change:
    """The first difference between a run's fingerprint and the input's now."""

    message: str
    n_changed: int  # mini-batches that would run again with --rerun-changed


def first_change(
    then: RunFingerprint, now: RunFingerprint, plan: BatchPlan, code_dir: Path, step: str = "step"
) -> Change | None:
    """None when now equals then; else what changed first: a code file, then a setting
    (named as jobs.<step>.<label>), then a batch."""
    code = then.code.first_change(now.code)
    if code is not None:
        return Change(
            f"task.code file {code} since the run started ({code_dir}); results of "
            "the old code cannot be mixed with the new",
            now.n_batches,
        )
    setting = then.first_setting_change(now)
    if setting is not None:
        return Change(
            f"jobs.{step}.{setting} since the run started; results of the old "
            "settings cannot be mixed with the new",
            now.n_batches,
        )
    same = then.unchanged_batches(now)
    if same.all() and then.n_batches == now.n_batches:
        return None
    counts = ""
    if then.n_batches != now.n_batches or then.n_items != now.n_items:
        counts = (
            f" (the run was planned as {then.n_batches} mini-batches of {then.n_items} "
            f"items, the input now gives {now.n_batches} of {now.n_items})"
        )
    n_changed = int((~same).sum())
    if n_changed == 0:  # only batches at the end are gone
        return Change(
            f"the input changed since the run started{counts}: mini-batches "
            f"{now.n_batches} to {then.n_batches - 1} are gone",
            0,
        )
    first = int(np.flatnonzero(~same)[0])
    what = (
        "it is new"
        if first >= then.n_batches
        else "its files, their sizes or modification times, or its byte or row ranges differ"
    )
    return Change(
        f"mini-batch {first} changed since the run started{counts}: {what} "
        f"({n_changed} of {now.n_batches} mini-batches changed); now it is "
        f"{plan.describe(first)}",
        n_changed,
    )
