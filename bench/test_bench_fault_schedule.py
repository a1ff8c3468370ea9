"""Soak of the random fault schedules of tests/test_fault_schedule.py, for longer (issue 8).

Run: python -m pytest bench/test_bench_fault_schedule.py -p no:cacheprovider
     (SOAK_SCHEDULES=N jobs, default 200, about ten minutes on 2 cores;
      PARAJOB_FAULT_SEED=S fixes the first seed)

The same generator and checks as the suite's bounded sample, over many more seeds: every
job must end with each row exactly once, in order, or fail with the right reason. It
reports how many jobs ran and the seed of any that did not end as its schedule says.
"""

from __future__ import annotations

import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fault_schedule import run_schedule  # noqa: E402 - the suite's generator and checks

N_SCHEDULES = int(os.environ.get("SOAK_SCHEDULES", "200"))


def test_fault_schedule_soak(tmp_path: Path) -> None:
    base = int(os.environ.get("PARAJOB_FAULT_SEED") or random.SystemRandom().randrange(10**9))
    failures: list[str] = []

    def job(i: int) -> None:
        try:
            run_schedule(tmp_path / f"job{i}", base + i)
        except AssertionError as exc:
            failures.append(f"seed {base + i}: {str(exc)[:2000]}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(job, range(N_SCHEDULES)))
    report(
        f"fault-schedule soak: {N_SCHEDULES} random jobs from seed {base}, "
        f"{len(failures)} did not end as scheduled"
    )
    assert not failures, "\n\n".join(failures)
