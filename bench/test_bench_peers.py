"""parajob vs its peers on issue 13's workloads: whole-process wall time, same work, same 2
worker processes, every runner's output checked against a serial loop's.

Run: PYTHONPATH=$PWD/python python3 -m pytest bench/test_bench_peers.py -p no:cacheprovider
     (-o faulthandler_timeout=0: a workload's test takes over pyproject's 120 s, and
     faulthandler then dumps the stacks, harmlessly, once per test)
     (PARAJOB_BENCH_SCALE=0.1: a tenth of the sizes, for a quick check; inputs are made once
     and cached under $TMPDIR/parajob-bench-peers-*; then `cd bench && python3 -m
     peers.results --write RESULTS.md` writes bench/RESULTS.md from this run's JSON)

    test_workload[W]    for one workload W (tiny-100, tiny-1, images, table-csv,
                        table-parquet, partitions):
        1. warm the page cache (every runner reads warm files)
        2. tune: the Pool once per chunksize candidate; the best is every peer's chunksize
        3. ROUNDS interleaved rounds: parajob, Pool, ProcessPoolExecutor, joblib, Dask,
           Ray, serial, each a fresh process (bench/peers/measure.py: Popen to exit);
           Dask runs once only when that run is > 3x the best other peer's (it was, by
           far, in issue 13); Ray and joblib are skipped, with the reason, when not
           importable
        4. every run's lines == serial's as a multiset, else the test FAILS
    test_first_run      launch -> the first run() on a 10-file job: parajob vs a Pool script
    test_plan_memory    the driver's peak RSS for `parajob run` over 1,000,000 empty files
    test_targets        issue 13's targets on the medians; fails naming every unmet one
                        (reported, never relaxed: the lines above hold the numbers)

The table is printed in pytest's terminal summary (conftest.report) and the raw rounds go
to $TMPDIR/parajob-bench-peers-last.json (peers/results.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import report
from peers import jobs, measure, results, workloads

ROUNDS = 3
WORKERS = jobs.WORKERS
DASK_ONCE_FACTOR = 3.0  # Dask runs once when its first run is > 3x the best other peer's


@dataclass(frozen=True)
class Case:
    title: str
    data: Callable[[], Path]
    candidates: tuple[int, ...]  # the Pool's chunksize candidates (units per message)


CASES = {
    "tiny-100": Case("tiny files, 100 per mini-batch", workloads.tiny_files, (1, 10, 50)),
    "tiny-1": Case("tiny files, 1 per mini-batch", workloads.tiny_files, (100, 1000, 3125)),
    "images": Case("64x64 JPEGs, 10 per mini-batch", workloads.jpegs, (1, 10, 50)),
    "table-csv": Case("sales CSV scored, 1MB mini-batches", workloads.sales_csv, (1, 4)),
    "table-parquet": Case(
        "sales Parquet scored, 1MB (1 row group)", workloads.sales_parquet, (1, 4)
    ),
    "partitions": Case("3,000 (store, brand) fits", workloads.sales_csv, (1, 10, 50)),
}
SKIPS = {
    name: f"{name} is not importable (pip install {name})"
    for name in ("joblib", "ray")
    if importlib.util.find_spec(name) is None
}
if importlib.util.find_spec("distributed") is None:
    SKIPS["dask"] = 'distributed is not importable (pip install "parajob[dask]")'
PEERS = [p for p in results.PEERS if p not in SKIPS]

RESULTS: dict[str, Any] = {
    "workloads": {},
    "workers": WORKERS,
    "rounds": ROUNDS,
    "scale": os.environ.get("PARAJOB_BENCH_SCALE", "1"),
}


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    """After the module: the table (terminal summary) and the JSON (peers/results.py)."""
    measure.compile_packages()
    RESULTS["load"] = [os.getloadavg()[0]]
    yield
    save()
    if RESULTS["workloads"] or "first_run" in RESULTS or "plan" in RESULTS:
        report(
            f"parajob vs peers, {WORKERS} processes each, medians of {ROUNDS} interleaved "
            f"rounds (1-minute load {RESULTS['load'][0]:.1f} -> {RESULTS['load'][1]:.1f}; "
            f"JSON: {results.LAST_JSON}):"
        )
        for line in results.table(RESULTS) + results.extras(RESULTS):
            report(line)


def save() -> None:
    """The JSON so far (after every test: a run stopped halfway keeps what it measured)."""
    RESULTS["load"][1:] = [os.getloadavg()[0]]
    RESULTS["machine"] = results.machine()
    results.LAST_JSON.write_text(json.dumps(RESULTS, indent=1), encoding="utf-8")


class Runs:
    """One workload's launches: fresh output paths, the check against serial's output."""

    def __init__(self, name: str, data: Path, folder: Path) -> None:
        self.name, self.data, self.folder = name, data, folder
        self.pipeline = jobs.write_job(folder / "job", name, data)
        self.reference = folder / "serial.txt"
        self.count = 0

    def launch(self, runner: str, chunksize: int) -> measure.Launch:
        """One run of runner; its output checked against serial's (serial's first run
        makes the reference)."""
        self.count += 1
        if runner == "parajob":
            run_dir = self.folder / f"run{self.count}"
            cmd = measure.python("-m", "parajob", "run", str(self.pipeline), "--quiet")
            launched = measure.launch([*cmd, "--run-dir", str(run_dir)])
            out = jobs.output(run_dir)
        else:
            out = self.folder / f"{runner}{self.count}.txt"
            args = ["-m", "peers.runners", runner, self.name, str(self.data), str(out)]
            launched = measure.launch(measure.python(*args, f"--chunksize={chunksize}"))
        assert launched.returncode == 0, f"{runner} on {self.name}: {launched.stderr[-3000:]}"
        if runner == "serial" and not self.reference.exists():
            shutil.copyfile(out, self.reference)
        else:
            same = measure.digest(out) == measure.digest(self.reference)
            assert same, f"{runner} on {self.name}: " + measure.differences(out, self.reference)
        if runner == "parajob":
            shutil.rmtree(out.parent.parent.parent)  # the run folder: only the time matters
        else:
            out.unlink()
        return launched


@pytest.mark.parametrize("name", list(CASES))
def test_workload(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    data = case.data()
    workloads.warm(data)
    runs = Runs(name, data, tmp_path)
    runs.launch("serial", 1)  # the reference every other run is checked against
    tuning = {c: runs.launch("pool", c).wall_s for c in case.candidates}
    chunksize = min(tuning, key=tuning.__getitem__)
    seconds: dict[str, list[float]] = {r: [] for r in ["parajob", *PEERS, "serial"]}
    rss: dict[str, list[float]] = {r: [] for r in seconds}
    for round_ in range(ROUNDS):
        for runner in seconds:
            if runner == "dask" and round_ > 0 and dask_once(seconds):
                continue
            launched = runs.launch(runner, chunksize)
            seconds[runner].append(launched.wall_s)
            rss[runner].append(launched.peak_rss_mib)
    RESULTS["workloads"][name] = {
        "title": case.title,
        "runs": seconds,
        "rss": rss,
        "chunksize": chunksize,
        "tuning": {str(c): s for c, s in tuning.items()},
        "skipped": {r: SKIPS[r] for r in SKIPS},
        "workers": WORKERS,
    }
    save()


def dask_once(seconds: dict[str, list[float]]) -> bool:
    others = [s[0] for r, s in seconds.items() if r in PEERS and r != "dask" and s]
    return bool(others) and seconds["dask"][0] > DASK_ONCE_FACTOR * min(others)


def test_first_run(tmp_path: Path) -> None:
    """Launch -> the first run() call (time.time() in run(), against time.time() just
    before Popen) on a 10-file job, 1 file per mini-batch: parajob vs a Pool script."""
    data = workloads.ten_files()
    pipeline = jobs.write_job(tmp_path / "job", "first-run", data)
    got: dict[str, list[float]] = {"parajob": [], "pool": []}
    for round_ in range(ROUNDS):
        for runner in got:
            stamps = tmp_path / f"stamps-{runner}-{round_}"
            os.environ["PARAJOB_BENCH_STAMPS"] = str(stamps)
            if runner == "parajob":
                run_dir = str(tmp_path / f"run{round_}")
                cmd = measure.python("-m", "parajob", "run", str(pipeline), "--run-dir", run_dir)
            else:
                out = str(tmp_path / f"pool{round_}.txt")
                cmd = measure.python("-m", "peers.runners", "pool", "first-run", str(data), out)
            launched = measure.launch(cmd)
            assert launched.returncode == 0, launched.stderr[-3000:]
            times = [float(t) for t in stamps.read_text(encoding="ascii").split()]
            assert len(times) == 10, f"{runner}: run() called {len(times)} times, not 10"
            got[runner].append(min(times) - launched.started_at)
    os.environ.pop("PARAJOB_BENCH_STAMPS", None)
    RESULTS["first_run"] = got
    save()


def test_plan_memory(tmp_path: Path) -> None:
    """The driver's peak RSS (VmHWM) for `parajob run` over 1,000,000 empty files
    (mini_batch_size 100, run() returns one row per mini-batch: its length), and a plain
    os.scandir listing of them for scale."""
    data = workloads.empty_files()
    n = sum(len(names) for _folder, _dirs, names in os.walk(data))
    pipeline = jobs.write_job(tmp_path / "job", "plan", data)
    run_dir = str(tmp_path / "run")
    cmd = measure.python("-m", "parajob", "run", str(pipeline), "--quiet", "--run-dir", run_dir)
    launched = measure.launch(cmd)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert sum(map(int, jobs.output(Path(run_dir)).read_text().split())) == n
    args = ["-m", "peers.runners", "serial", "listing", str(data), str(tmp_path / "ls.txt")]
    listing = measure.launch(measure.python(*args))
    assert listing.returncode == 0, listing.stderr[-3000:]
    RESULTS["plan"] = {
        "files": n,
        "mini_batch_size": jobs.SIZES["plan"],
        "parajob_mib": launched.peak_rss_mib,
        "parajob_s": launched.wall_s,
        "listing_mib": listing.peak_rss_mib,
        "listing_s": listing.wall_s,
    }
    save()


def test_targets() -> None:
    """Issue 13's acceptance on this run's medians: every unmet target is named."""
    if not RESULTS["workloads"]:
        pytest.skip("no workload ran (deselected)")
    unmet = []
    for name, case in RESULTS["workloads"].items():
        ratio = results.ratio(case)
        if ratio is not None and ratio < results.TARGETS[name]:
            unmet.append(f"{name}: {ratio:.2f}x the best peer (target {results.TARGETS[name]}x)")
        scaling = results.scaling(case)
        if name == "images" and scaling is not None and scaling < results.SCALING_TARGET:
            unmet.append(f"images: {scaling:.0%} of perfect scaling (target 95%)")
    if "first_run" in RESULTS:
        first = statistics.median(RESULTS["first_run"]["parajob"])
        if first > results.FIRST_RUN_TARGET_S:
            unmet.append(f"first run() {first:.3f} s after launch (target 0.3 s)")
    if "plan" in RESULTS and RESULTS["plan"]["parajob_mib"] >= results.PLAN_RSS_TARGET_MIB:
        unmet.append(f"1M-file plan: {RESULTS['plan']['parajob_mib']:.0f} MiB (target 200)")
    assert not unmet, "issue 13 targets not met: " + "; ".join(unmet)
