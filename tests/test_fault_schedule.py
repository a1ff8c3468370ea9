"""Randomized fault schedules, whole jobs through the CLI (issue 8).

For batch counts 1-40, workers 1-4, and random raises, hangs past the timeout, os._exit,
SIGKILLs and slow init() on random attempts, every job ends with each row exactly once, in
order, or fails with the right reason (tests/fault_schedule.py says what each must end
with). Bounded: jobs are started until BUDGET_S has passed (two at a time), at least
MIN_JOBS. The seed is printed on failure; rerun one with PARAJOB_FAULT_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fault_schedule import run_schedule

BUDGET_S = 30.0  # jobs still running then finish: the test stays under a minute
MIN_JOBS = 6
MAX_JOBS = 40


def test_random_fault_schedules_end_with_every_row_once_or_the_right_reason(tmp_path: Path) -> None:
    fixed = os.environ.get("PARAJOB_FAULT_SEED")
    base = int(fixed) if fixed else random.SystemRandom().randrange(10**9)
    print(f"fault schedule base seed: {base} (PARAJOB_FAULT_SEED={base} reruns it)")
    if fixed:  # one schedule, as asked
        run_schedule(tmp_path / "job0", base)
        return
    started = time.monotonic()

    def job(i: int) -> int | None:
        if i >= MIN_JOBS and time.monotonic() - started > BUDGET_S:
            return None
        run_schedule(tmp_path / f"job{i}", base + i)
        return i

    with ThreadPoolExecutor(max_workers=2) as pool:
        ran = [i for i in pool.map(job, range(MAX_JOBS)) if i is not None]
    assert len(ran) >= MIN_JOBS
