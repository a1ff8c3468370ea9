"""Random fault schedules for whole jobs, and what each must end with (issue 8).

A schedule fixes, from one seed, a job's shape (files, mini-batch size, workers, retries,
threshold) and, for each mini-batch, what its n-th run() call does: succeed, raise, hang
past the timeout, ``os._exit``, or SIGKILL itself; workers also sleep a random while in
init(). The entry script (ENTRY) counts its calls per mini-batch with O_EXCL marker files,
so the schedule holds across processes and retries. From the schedule alone follow the
outcome a user relies on: which mini-batches fail for good, how many attempts fail, whether
the job fails and why, and the exact output.

Every run() lasts over 1 ms, so no result is ever gathered (ResultWriter gathers only
behind quicker calls) and no rerun happens that the schedule does not cause: the expected
attempt counts are exact. tests/test_fault_schedule.py runs a bounded sample in the suite;
bench/test_bench_fault_schedule.py a longer soak of the same generator.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

FAULTS = ("raise", "hang", "exit", "sigkill")

ENTRY = """
import json, os, signal, time

SCHEDULE = json.load(open(os.environ["SCHEDULE"]))
MARKERS = os.environ["MARKERS"]

def init():
    time.sleep(SCHEDULE["init_sleep"][os.getpid() % len(SCHEDULE["init_sleep"])])

def _call_number(index):
    n = 0
    while True:
        try:
            os.close(os.open(os.path.join(MARKERS, f"{index}.{n}"), os.O_CREAT | os.O_EXCL))
            return n
        except FileExistsError:
            n += 1

def run(mini_batch, context):
    index = context.minibatch_index
    calls = SCHEDULE["faults"].get(str(index), [])
    n = _call_number(index)
    fault = calls[n] if n < len(calls) else None
    if fault == "raise":
        raise RuntimeError(f"scheduled fault in mini-batch {index}, call {n}")
    if fault == "hang":
        time.sleep(3600)
    if fault == "exit":
        os._exit(13)
    if fault == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    deadline = time.perf_counter() + 0.0015  # > 1 ms: never gathered (see module docstring)
    while time.perf_counter() < deadline:
        pass
    return [os.path.basename(p) for p in mini_batch]
"""


@dataclass(frozen=True)
class Schedule:
    seed: int
    files: int
    mini_batch_size: int
    workers: int
    max_retries: int
    mini_batch_error_threshold: int
    faults: dict[int, list[str | None]]  # mini-batch -> what its call 0, 1, ... does
    init_sleep: list[float]

    @property
    def n_batches(self) -> int:
        return -(-self.files // self.mini_batch_size)

    def names(self, batch: int) -> list[str]:
        first = batch * self.mini_batch_size
        return [
            f"f{i:05d}.txt" for i in range(first, min(first + self.mini_batch_size, self.files))
        ]

    def failed_for_good(self) -> list[int]:
        tries = self.max_retries + 1
        return [
            b
            for b, calls in sorted(self.faults.items())
            if len(calls) >= tries and all(c is not None for c in calls[:tries])
        ]

    def failed_attempts(self) -> int:
        """Attempts that fail, when every mini-batch gets to run (no early stop)."""
        total = 0
        for calls in self.faults.values():
            leading = 0
            for call in calls[: self.max_retries + 1]:
                if call is None:
                    break
                leading += 1
            total += leading
        return total

    def failure_reason(self) -> str | None:
        """The words job_result.txt's reason must hold if the job fails, else None."""
        limit = self.mini_batch_error_threshold
        if limit != -1 and len(self.failed_for_good()) > limit:
            return "mini_batch_error_threshold"
        if not self.expected_rows():  # docs/contract.md §4.4: append_row, no item returned
            return "append_row is on but run() returned no item"
        return None

    def expected_rows(self) -> list[str]:
        failed = set(self.failed_for_good())
        return [n for b in range(self.n_batches) if b not in failed for n in self.names(b)]

    def describe(self) -> str:
        return (
            f"seed {self.seed}: {self.files} files / {self.mini_batch_size} per mini-batch "
            f"= {self.n_batches} mini-batches, {self.workers} workers, max_retries "
            f"{self.max_retries}, mini_batch_error_threshold "
            f"{self.mini_batch_error_threshold}, faults {self.faults}"
        )


def make_schedule(
    seed: int, max_batches: int = 40, max_workers: int = 4, hang_share: float = 0.15
) -> Schedule:
    """A random job and fault schedule. Hangs are rarer than other faults (each one costs a
    whole timeout); at most a third of the mini-batches misbehave at all."""
    rng = random.Random(seed)
    size = rng.choice([1, 1, 2, 3])
    n_batches = rng.randint(1, max_batches)
    files = max(1, n_batches * size - rng.randint(0, size - 1))
    n_batches = -(-files // size)
    max_retries = rng.choice([0, 1, 2, 2, 3])
    faults: dict[int, list[str | None]] = {}
    for batch in rng.sample(range(n_batches), k=rng.randint(0, max(1, n_batches // 3))):
        calls: list[str | None] = []
        for _ in range(rng.randint(1, max_retries + 2)):
            kind = "hang" if rng.random() < hang_share else rng.choice(("raise", "exit", "sigkill"))
            calls.append(kind if rng.random() < 0.85 else None)
        faults[batch] = calls
    threshold = rng.choice([-1, -1, 0, 1, 2])
    return Schedule(
        seed,
        files,
        size,
        rng.randint(1, max_workers),
        max_retries,
        threshold,
        faults,
        [rng.choice([0.0, 0.0, 0.05, 0.3]) for _ in range(4)],
    )


def write_schedule_job(folder: Path, schedule: Schedule) -> Path:
    """The pipeline (and its data, entry script and schedule file) under folder."""
    data, src, markers = folder / "data", folder / "src", folder / "markers"
    for path in (data, src, markers):
        path.mkdir(parents=True, exist_ok=True)
    for i in range(schedule.files):
        (data / f"f{i:05d}.txt").write_text(f"{i}\n")
    (src / "entry.py").write_text(textwrap.dedent(ENTRY))
    (folder / "schedule.json").write_text(
        json.dumps(
            {
                "faults": {str(b): c for b, c in schedule.faults.items()},
                "init_sleep": schedule.init_sleep,
            }
        )
    )
    pipeline = folder / "pipeline.yml"
    pipeline.write_text(f"""\
type: pipeline
jobs:
  step:
    type: parallel
    inputs:
      data: {{type: uri_folder, path: ./data}}
    outputs:
      out: {{type: uri_file}}
    input_data: ${{{{inputs.data}}}}
    mini_batch_size: "{schedule.mini_batch_size}"
    max_concurrency_per_instance: {schedule.workers}
    mini_batch_error_threshold: {schedule.mini_batch_error_threshold}
    retry_settings: {{max_retries: {schedule.max_retries}, timeout: 1}}
    environment_variables:
      SCHEDULE: {folder / "schedule.json"}
      MARKERS: {markers}
    task:
      type: run_function
      code: ./src
      entry_script: entry.py
      append_row_to: ${{{{outputs.out}}}}
""")
    return pipeline


def check_outcome(schedule: Schedule, returncode: int, output: str | None, job_result: str) -> None:
    """Assert the job ended as its schedule says; messages carry the schedule (and seed)."""
    why = f"\n{schedule.describe()}\njob_result.txt:\n{job_result}"
    expected = schedule.expected_rows()
    rows = (output or "").splitlines()
    assert len(rows) == len(set(rows)), "a row was written twice" + why
    reason = schedule.failure_reason()
    if reason is not None:
        assert returncode == 1, f"exit {returncode}, expected 1" + why
        assert reason in job_result.splitlines()[2], why
        # Stopped early: whatever was written is a part of the full output, in order.
        position = {name: i for i, name in enumerate(expected)}
        assert all(r in position for r in rows), "a row of a failed mini-batch" + why
        assert [position[r] for r in rows] == sorted(position[r] for r in rows), why
        return
    assert returncode == 0, f"exit {returncode}, expected 0" + why
    assert rows == expected, "output differs" + why
    failed = len(schedule.failed_for_good())
    done = schedule.n_batches - failed
    assert f"{schedule.n_batches} total, {done} completed, {failed} failed" in job_result, why
    assert f"failed attempts:      {schedule.failed_attempts()} " in job_result, why


def run_schedule(folder: Path, seed: int, timeout_s: float = 300) -> None:
    """Run one scheduled job through the real CLI and check how it ended."""
    schedule = make_schedule(seed)
    pipeline = write_schedule_job(folder, schedule)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "parajob",
                "run",
                str(pipeline),
                "--run-dir",
                str(folder / "run"),
            ],
            cwd=folder,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"did not end in {timeout_s} s: {schedule.describe()}") from exc
    step = folder / "run" / "step"
    result, output = step / "logs" / "job_result.txt", step / "outputs" / "out"
    # No traceback of parajob's own; the user's, in the failure block that closes stderr
    # after a step that did not succeed (issue 11: "failures where the user looks"), is meant.
    own = proc.stderr.split("parajob: step step ", 1)[0]
    assert "Traceback" not in own, f"{schedule.describe()}\n{proc.stderr}"
    check_outcome(
        schedule,
        proc.returncode,
        output.read_text() if output.exists() else None,
        result.read_text() if result.exists() else "(no job_result.txt)",
    )
