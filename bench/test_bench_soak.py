"""Soak: 100,000 mini-batches with 1% random raises, 0.1% hangs and 0.1% SIGKILLs.

Run: python -m pytest bench/test_bench_soak.py -p no:cacheprovider   (about two minutes)

Each mini-batch is one small file and ~0.5 ms of CPU work. The faulty run must finish with
every surviving row exactly once (a row per accepted mini-batch, none twice, none of a
failed one), and its throughput must stay within 20% of the fault-free run. More workers
than cores (8 on the 2-core reference machine) is how a user keeps the cores busy while a
hung worker waits for its timeout: a hung worker holds no CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cached_file_tree, report, write_file_job
from pytest_benchmark.fixture import BenchmarkFixture

from parajob.runtime.job import run_parallel_step
from parajob.spec import load_pipeline

N_BATCHES = 100_000
WORKERS = 8
timings: dict[str, float] = {}

ENTRY = """
import os, random, signal, time

FAULTS = os.environ.get("SOAK_FAULTS") == "1"
rng = random.Random()

def init():
    rng.seed(os.getpid() ^ time.time_ns())

def run(mini_batch):
    if FAULTS:
        roll = rng.random()
        if roll < 0.010:
            raise RuntimeError("soak: injected error")
        if roll < 0.011:
            time.sleep(3600)
        if roll < 0.012:
            os.kill(os.getpid(), signal.SIGKILL)
    deadline = time.perf_counter() + 0.0005  # ~0.5 ms of CPU per mini-batch
    while time.perf_counter() < deadline:
        pass
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.fixture(scope="module")
def files() -> Path:
    return cached_file_tree(f"soak-{N_BATCHES}", N_BATCHES, lambda i: b"x")


def make_pipeline(folder: Path, files: Path, faults: bool) -> Path:
    extra = (
        "retry_settings: {max_retries: 2, timeout: 1}\n"
        f'environment_variables: {{SOAK_FAULTS: "{int(faults)}"}}\n'
    )
    return write_file_job(folder, "soak", files, ENTRY, WORKERS, extra)


@pytest.mark.benchmark(group="soak-100k")
@pytest.mark.parametrize("faults", [False, True], ids=["fault-free", "faulty"])
def test_soak(benchmark: BenchmarkFixture, files: Path, tmp_path: Path, faults: bool) -> None:
    pipeline = make_pipeline(tmp_path / "job", files, faults)
    outcomes = []

    def once() -> None:
        run_dir = tmp_path / f"run{len(outcomes)}"
        outcomes.append(
            run_parallel_step(load_pipeline(pipeline, run_dir=run_dir).jobs["soak"], run_dir)
        )

    benchmark.pedantic(once, rounds=1, iterations=1)
    outcome = outcomes[-1]
    assert outcome.output is not None
    rows = outcome.output.read_text().splitlines()
    tally = outcome.tally
    # Every surviving row exactly once: one row per accepted mini-batch, none repeated.
    assert len(rows) == len(set(rows)) == tally.done_batches
    assert tally.done_batches + tally.failed_batches == N_BATCHES
    assert rows == sorted(rows)  # in mini-batch order
    if faults:
        assert tally.failed_attempts > 1000  # the faults really happened
    timings["faulty" if faults else "fault-free"] = (
        benchmark.stats.stats.median if benchmark.stats else 0
    )
    if len(timings) == 2:
        free, faulty = timings["fault-free"], timings["faulty"]
        report(
            f"soak of {N_BATCHES:,} mini-batches, {WORKERS} workers: fault-free {free:.1f}s, "
            f"with 1% raises + 0.1% hangs + 0.1% SIGKILLs {faulty:.1f}s "
            f"({tally.failed_attempts} failed attempts, {tally.failed_batches} mini-batches "
            f"failed for good): throughput {free / faulty:.0%} of fault-free (target >= 80%)"
        )
