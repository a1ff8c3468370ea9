"""parajob._core.list_files / FileList: what is listed, in which order, and how it fails.

Every test builds a real tree (under tmp_path, or a folder an unprivileged user can reach
for the permission tests); one outcome asserted per failure mode.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import parajob
from parajob._core import FileList, list_files


def write(path: Path, data: bytes | str = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def relpaths(files: FileList) -> list[str]:
    return [files.relpath(i) for i in range(len(files))]


def walk_reference(root: Path) -> dict[str, int]:
    """What os.walk + os.stat see: relative path -> size, regular files only."""
    found: dict[str, int] = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(folder, name)
            found[os.path.relpath(full, root).replace(os.sep, "/")] = os.stat(full).st_size
    return found


def byte_order(names: list[str]) -> list[str]:
    """The documented order: relative paths compared as raw bytes."""
    return sorted(names, key=os.fsencode)


# --- what is listed -------------------------------------------------------------------


def test_nested_folders_are_listed_recursively(tmp_path: Path) -> None:
    write(tmp_path / "top.txt", "1")
    write(tmp_path / "a" / "b" / "c" / "deep.txt", "22")
    write(tmp_path / "a" / "mid.txt", "333")
    (tmp_path / "empty_sub").mkdir()

    files = list_files(str(tmp_path))

    assert relpaths(files) == ["a/b/c/deep.txt", "a/mid.txt", "top.txt"]
    assert files.root == str(tmp_path)
    assert files.total_bytes == 6


def test_empty_folder_lists_nothing(tmp_path: Path) -> None:
    files = list_files(str(tmp_path))

    assert len(files) == 0
    assert files.paths(0, 10) == []
    assert files.sizes().shape == (0,)
    assert files.total_bytes == 0


def test_unicode_space_and_hidden_names(tmp_path: Path) -> None:
    names = ["with space.txt", "ünïcødé/日本語.csv", ".hidden", "emoji 🎉/x y.json"]
    for name in names:
        write(tmp_path / name, name)

    files = list_files(tmp_path)  # os.PathLike is accepted too

    assert relpaths(files) == byte_order(names)
    for i in range(len(files)):
        assert Path(files.path(i)).read_text() == files.relpath(i)


def test_invalid_utf8_name_round_trips_like_fsdecode(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/bad-\xff\xfe.bin"
    with open(raw, "wb") as f:
        f.write(b"abc")

    files = list_files(str(tmp_path))

    assert files.relpath(0) == os.fsdecode(b"bad-\xff\xfe.bin")
    assert os.fsencode(files.path(0)) == raw
    assert files.size(0) == 3


def test_fifo_and_directories_are_not_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    write(tmp_path / "file", "x")

    assert relpaths(list_files(str(tmp_path))) == ["file"]


def test_root_is_normalised_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "sub" / "f.txt")
    monkeypatch.chdir(tmp_path)

    files = list_files("./sub/../sub//")

    assert files.root == str(tmp_path / "sub")
    assert files.path(0) == str(tmp_path / "sub" / "f.txt")


# --- order, sizes, access -------------------------------------------------------------


def test_order_is_byte_wise_relative_path_order(tmp_path: Path) -> None:
    # '-' (0x2D) < '/' (0x2F) < '0' (0x30): a per-folder name sort would put "a/..." first.
    names = ["a/x", "a-b", "a0", "A", "b", "a/y/z", "é", "z"]
    for name in names:
        write(tmp_path / name)

    assert relpaths(list_files(str(tmp_path))) == byte_order(names)


def test_sizes_equal_os_stat(tmp_path: Path) -> None:
    for i in range(20):
        write(tmp_path / f"d{i % 3}" / f"f{i}", b"x" * (i * 37))

    files = list_files(str(tmp_path))

    expected = [os.stat(files.path(i)).st_size for i in range(len(files))]
    assert [files.size(i) for i in range(len(files))] == expected
    assert files.sizes().dtype == np.uint64
    assert files.sizes().tolist() == expected
    assert files.total_bytes == sum(expected)


def test_paths_slices_like_a_list(tmp_path: Path) -> None:
    for i in range(10):
        write(tmp_path / f"f{i}")
    files = list_files(str(tmp_path))
    every = [files.path(i) for i in range(len(files))]

    for start, stop in [(0, 10), (2, 5), (5, 2), (-3, 100), (-100, 3), (10, 20), (0, -1)]:
        assert files.paths(start, stop) == every[start:stop], (start, stop)
    assert every == [str(tmp_path / f"f{i}") for i in range(10)]


def test_index_errors_and_negative_indices(tmp_path: Path) -> None:
    write(tmp_path / "a", "1")
    write(tmp_path / "b", "22")
    files = list_files(str(tmp_path))

    assert files.relpath(-1) == "b"
    assert files.size(-2) == 1
    with pytest.raises(IndexError):
        files.path(2)
    with pytest.raises(IndexError):
        files.relpath(-3)


def test_file_list_survives_fork(tmp_path: Path) -> None:
    write(tmp_path / "x" / "y", "abc")
    files = list_files(str(tmp_path))
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:  # child: report what it sees, then leave without running pytest's atexit
        os.write(write_end, json.dumps([files.paths(0, 1), files.total_bytes]).encode())
        os._exit(0)
    os.close(write_end)
    seen = json.loads(os.read(read_end, 65536))
    os.close(read_end)
    os.waitpid(pid, 0)

    assert seen == [[str(tmp_path / "x" / "y")], 3]


# --- symlinks ---------------------------------------------------------------------------


def test_symlink_to_file_is_listed_under_its_own_path_with_target_size(tmp_path: Path) -> None:
    write(tmp_path / "real.bin", b"12345")
    (tmp_path / "alias.bin").symlink_to("real.bin")

    files = list_files(str(tmp_path))

    assert relpaths(files) == ["alias.bin", "real.bin"]
    assert files.sizes().tolist() == [5, 5]


def test_symlink_to_directory_is_followed(tmp_path: Path) -> None:
    write(tmp_path / "outside" / "inner.txt", "abc")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "outside")

    files = list_files(str(tmp_path / "root"))

    assert relpaths(files) == ["linked/inner.txt"]
    assert files.size(0) == 3


def test_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    write(tmp_path / "a" / "f.txt")
    (tmp_path / "a" / "up").symlink_to("..")  # a/up -> root: a loop
    (tmp_path / "a" / "self").symlink_to(".")  # a/self -> a: a loop
    (tmp_path / "b").symlink_to("a")  # b -> a: not a loop, listed once more

    files = list_files(str(tmp_path))

    assert relpaths(files) == ["a/f.txt", "b/f.txt"]


def test_broken_symlinks_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "ok.txt")
    (tmp_path / "dangling").symlink_to("does-not-exist")
    (tmp_path / "through-a-file").symlink_to("ok.txt/child")
    (tmp_path / "self-loop").symlink_to("self-loop")

    assert relpaths(list_files(str(tmp_path))) == ["ok.txt"]


def test_follow_symlinks_false_skips_every_symlink(tmp_path: Path) -> None:
    write(tmp_path / "dir" / "f")
    write(tmp_path / "file")
    (tmp_path / "to-dir").symlink_to("dir")
    (tmp_path / "to-file").symlink_to("file")

    files = list_files(str(tmp_path), follow_symlinks=False)

    assert relpaths(files) == ["dir/f", "file"]


# --- errors ---------------------------------------------------------------------------


def test_missing_root_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope"

    with pytest.raises(FileNotFoundError, match="input folder not found") as info:
        list_files(str(missing))

    assert str(missing) in str(info.value)


def test_root_that_is_a_file_raises_not_a_directory(tmp_path: Path) -> None:
    file = write(tmp_path / "file.txt")

    with pytest.raises(NotADirectoryError) as info:
        list_files(str(file))

    assert str(file) in str(info.value)


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A folder that an unprivileged user can reach (pytest's tmp_path is mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="parajob-listing-"))
    folder.chmod(0o755)
    yield folder
    for sub, _dirs, _files in os.walk(folder):
        os.chmod(sub, 0o755)
    shutil.rmtree(folder)


# Root bypasses permission bits, so as root the listing runs in a child that first drops
# to 'nobody' (65534); otherwise the locked folder would be read and the test would pass
# without ever exercising the EACCES path.
PERMISSION_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from parajob._core import list_files
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    threads_before = len(os.listdir("/proc/self/task"))
    try:
        files = list_files(sys.argv[1], threads=int(sys.argv[2]))
        outcome = {"listed": len(files)}
    except OSError as exc:
        outcome = {"type": type(exc).__name__, "message": str(exc), "errno": exc.errno}
    # A joined thread can stay in /proc/self/task for a moment after pthread_join returns
    # (the kernel clears its tid before it finishes exiting): wait for that, never for a
    # helper that is still running (it stays past the deadline and fails the test).
    deadline = time.monotonic() + 1
    while len(os.listdir("/proc/self/task")) > threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    outcome["threads_left"] = len(os.listdir("/proc/self/task")) - threads_before
    print(json.dumps(outcome))
    """
)


def list_unprivileged(root: Path, threads: int) -> dict[str, object]:
    package_parent = os.path.dirname(os.path.dirname(parajob.__file__))
    env = {**os.environ, "PYTHONPATH": package_parent}
    done = subprocess.run(
        [sys.executable, "-c", PERMISSION_CHILD, str(root), str(threads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    outcome: dict[str, object] = json.loads(done.stdout)
    return outcome


@pytest.mark.parametrize("threads", [1, 4])
def test_unreadable_subfolder_raises_permission_error_naming_it(
    world_readable_tmp: Path, threads: int
) -> None:
    root = world_readable_tmp
    for i in range(8):  # siblings, so that with threads the locked one is met by a helper
        write(root / f"readable{i}" / "ok.txt")
    locked = write(root / "readable3" / "locked" / "hidden.txt").parent
    locked.chmod(0o000)  # cannot be opened

    outcome = list_unprivileged(root, threads)

    assert outcome["type"] == "PermissionError", outcome
    assert str(locked) in str(outcome["message"])
    assert "silently miss" in str(outcome["message"])
    assert outcome["errno"] == 13
    assert outcome["threads_left"] == 0  # helpers are joined on the error path too


def test_unsearchable_subfolder_raises_permission_error_naming_the_entry(
    world_readable_tmp: Path,
) -> None:
    locked = write(world_readable_tmp / "listable" / "secret.txt").parent
    locked.chmod(0o444)  # its names can be read, but no entry in it can be stat-ed

    outcome = list_unprivileged(world_readable_tmp, 1)

    assert outcome["type"] == "PermissionError", outcome
    assert str(locked / "secret.txt") in str(outcome["message"])


# --- agreement with os.walk -------------------------------------------------------------

NAME_ALPHABET = "abcXYZ019-_. é日"


def random_tree(root: Path, rng: random.Random, n_files: int) -> None:
    folders = [root]
    for _ in range(n_files):
        if rng.random() < 0.3:
            folder = rng.choice(folders) / random_name(rng)
            if not folder.exists():
                folder.mkdir()
                folders.append(folder)
        path = rng.choice(folders) / random_name(rng)
        if not path.exists():
            write(path, os.urandom(rng.randrange(0, 300)))


def random_name(rng: random.Random) -> str:
    name = "".join(rng.choice(NAME_ALPHABET) for _ in range(rng.randint(1, 8)))
    return name if name not in (".", "..") else name + "x"


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_os_walk_on_random_tree(tmp_path: Path, seed: int, threads: int) -> None:
    random_tree(tmp_path, random.Random(seed), n_files=300)
    expected = walk_reference(tmp_path)

    files = list_files(str(tmp_path), threads=threads)

    assert relpaths(files) == byte_order(list(expected))
    assert files.sizes().tolist() == [expected[r] for r in relpaths(files)]
    assert files.paths(0, len(files)) == [str(tmp_path / r) for r in relpaths(files)]


# --- threads ----------------------------------------------------------------------------


def test_large_flat_folder_is_stat_ed_in_chunks_by_several_threads(tmp_path: Path) -> None:
    # More entries than one stat chunk (512), with sizes that differ per file.
    for i in range(2_000):
        write(tmp_path / f"f{i:05d}", b"x" * (i % 97))
    write(tmp_path / "sub" / "g", "1")

    files = list_files(str(tmp_path), threads=4)

    assert len(files) == 2_001
    assert relpaths(files) == [f"f{i:05d}" for i in range(2_000)] + ["sub/g"]
    assert files.sizes().tolist()[:2_000] == [i % 97 for i in range(2_000)]


def os_thread_ids() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def test_no_helper_thread_outlives_a_listing(tmp_path: Path) -> None:
    # Workers are forked after the listing: it must leave the process as it found it.
    for i in range(40):
        write(tmp_path / f"d{i}" / "f")
    before = os_thread_ids()

    files = list_files(str(tmp_path), threads=8)

    assert len(files) == 40
    # Compare the thread ids, not their number: a thread that an earlier test left behind may
    # end while the listing runs, which would hide a leaked helper from a count.
    # A joined helper may linger in /proc/self/task for a moment (see PERMISSION_CHILD).
    deadline = time.monotonic() + 1
    while os_thread_ids() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os_thread_ids() - before == set()
