"""Listing 100,000 small files: parajob._core.list_files vs os.walk + os.stat.

Run: PYTHONPATH=python python -m pytest bench/test_bench_listing.py -p no:cacheprovider

Both sides produce (path, size) for every file. list_files builds paths lazily, so its
timing covers the walk, the FileList and the sizes array; a second parajob timing also
materialises every path as a Python str, for the caller that wants them all at once.
The tree is generated once and reused across sessions (a marker file outside the tree
says it is complete), so timings see a warm dentry cache on both sides.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from parajob._core import FileList, list_files

T = TypeVar("T")

N_FILES = 100_000
# 20 x 50 folders x 100 files, nested like a sharded dataset.
FANOUT = (20, 50)
FILES_PER_FOLDER = N_FILES // (FANOUT[0] * FANOUT[1])

Listing = dict[str, int]
timings: dict[str, tuple[float, float]] = {}  # name -> (min, median) seconds


def generate_tree(root: Path) -> None:
    payload = b"x" * 64
    for i in range(FANOUT[0]):
        for j in range(FANOUT[1]):
            folder = root / f"part-{i:02d}" / f"shard {j:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(FILES_PER_FOLDER):
                fd = os.open(folder / f"item-{k:04d}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.write(fd, payload[: (i + j + k) % 64])
                os.close(fd)


@pytest.fixture(scope="module")
def tree() -> Path:
    base = Path(tempfile.gettempdir()) / f"parajob-bench-listing-{N_FILES}"
    root, marker = base / "tree", base / "complete"
    if not marker.exists():
        generate_tree(root)
        marker.touch()
    return root


def walk_and_stat(root: str) -> Listing:
    out: Listing = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            out[path] = os.stat(path).st_size
    return out


def to_listing(files: FileList) -> Listing:
    return dict(zip(files.paths(0, len(files)), files.sizes().tolist(), strict=True))


def record(name: str, benchmark: BenchmarkFixture, run: Callable[[], T]) -> T:
    result = benchmark(run)
    if benchmark.stats is not None:  # None under --benchmark-disable
        timings[name] = (benchmark.stats.stats.min, benchmark.stats.stats.median)
    return result


@pytest.mark.benchmark(group="listing-100k")
def test_os_walk_and_stat(benchmark: BenchmarkFixture, tree: Path) -> None:
    result = record("os.walk+os.stat", benchmark, lambda: walk_and_stat(str(tree)))
    assert len(result) == N_FILES


@pytest.mark.benchmark(group="listing-100k")
@pytest.mark.parametrize("threads", [0, 1], ids=["threads=auto", "threads=1"])
def test_list_files(benchmark: BenchmarkFixture, tree: Path, threads: int) -> None:
    def run() -> FileList:
        files = list_files(str(tree), threads=threads)
        files.sizes()
        return files

    files = record(f"list_files(threads={threads or 'auto'})", benchmark, run)
    assert to_listing(files) == walk_and_stat(str(tree))


@pytest.mark.benchmark(group="listing-100k")
def test_list_files_with_all_paths(benchmark: BenchmarkFixture, tree: Path) -> None:
    def run() -> Listing:
        return to_listing(list_files(str(tree)))

    result = record("list_files(threads=auto)+all paths", benchmark, run)
    assert result == walk_and_stat(str(tree))


def test_report_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    base = timings.get("os.walk+os.stat")
    if base is None:
        pytest.skip("benchmarks did not run (--benchmark-disable or deselected)")
    with capsys.disabled():
        print(
            f"\nspeed-up over os.walk+os.stat, {N_FILES:,} files, {os.cpu_count()} CPUs "
            f"(min / median; os.walk+os.stat: {base[0] * 1e3:.0f} / {base[1] * 1e3:.0f} ms)"
        )
        for name, (fastest, median) in timings.items():
            if name != "os.walk+os.stat":
                print(
                    f"  {name}: {base[0] / fastest:.1f}x / {base[1] / median:.1f}x "
                    f"({fastest * 1e3:.0f} / {median * 1e3:.0f} ms)"
                )
