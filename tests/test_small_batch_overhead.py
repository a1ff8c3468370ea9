"""Many tiny mini-batches (issue 13, round 2): the cheaper per-mini-batch and end-of-job paths
keep every guarantee.

    the attempt log's join (_core.join_attempt_rows, attempt_rows.hpp) == the reference below
        (the regex + numpy join it replaced), row for row, garbage lines included
    20,000 one-file mini-batches on 2 workers (drains of many ends, the engine's long nap)
        -> each output row once, one attempt-log row per mini-batch with its five columns
    the same job with its driver SIGKILLed mid-run, then --resume
        -> each output row once; no mini-batch accepted twice in either run
"""

from __future__ import annotations

import csv
import random
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import ECHO_SCRIPT, kills_driver_at, run_cli, run_job, write_job

from parajob import _core
from parajob.runtime.shm_view import distinct_processes

# ---- the join, against a reference -----------------------------------------------------

# What the workers' ResultWriter writes (report.py's regex before the join moved to C++).
ROW = re.compile(rb"\d+,\d+,node\d+,process\d+,\d+,\d+,\d+\.\d+,(?:succeeded|short_return),\n")


def iso(ns: int) -> str:
    ms = ns // 1_000_000
    stamp = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def reference_join(part: bytes, accepted: list[tuple[int, int, int, int]], place: bytes) -> bytes:
    """The join as processed_mini-batches.csv defines it, one row at a time."""
    first: dict[int, tuple[int, int, int]] = {}
    for batch, attempt, start, end in accepted:
        first.setdefault(batch, (attempt, start, end))
    out = []
    for line in part.splitlines(keepends=True):
        if not ROW.fullmatch(line):
            continue
        index, attempt, rest = line.rstrip(b"\n").split(b",", 2)
        found = first.get(int(index))
        if found is None:
            out.append(b"%s,%s,%s,,,,,\n" % (index, attempt, rest))
        else:
            when = f"{iso(found[1])},{iso(found[2])}".encode()
            out.append(b"%s,%d,%s,%s,%s\n" % (index, found[0] + 1, rest, when, place))
    return b"".join(out)


GARBAGE = [
    b"garbage\n",
    b"1,1,node0,process1,1,1,1.0,succeeded,\r\n",  # a CR: not a row
    b"x\r",
    b"12,1,node0,process1,1,1,1.0,failed,\n",
    b"\n",
    b"007,1,node01,process01,1,1,1.1,succeeded,\n",  # leading zeros: kept as written
    b"5,1,node0,process1,1,1,1.,succeeded,\n",
    b"5,1,node0,process1,1,1,1.0,succeeded,x\n",
    b"99999999999,1,node0,process1,1,1,1.0,succeeded,\n",  # no such batch
]


@pytest.mark.parametrize("seed", range(4))
def test_the_join_matches_the_reference_row_for_row(seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    for i in range(2000):
        r = rng.random()
        if r < 0.7:
            status = rng.choice(["succeeded", "short_return"])
            lines.append(f"{i},{rng.randint(1, 3)},node000,process000001,1,1,0.0012,{status},\n")
        elif r < 0.85:
            lines.append(rng.choice(GARBAGE).decode())
        else:  # a batch seen again (a retry by the same process)
            lines.append(
                f"{rng.randint(0, 2000)},2,node000,process000001,1,0,0.0001,short_return,\n"
            )
    part = "".join(lines).encode() + b"3,1,node0,process1,1,1,1.0,succeeded,"  # torn tail
    # Accepted attempts: some batches twice (the first wins), stamps across days, a leap
    # day and the epoch's first millisecond.
    batches = rng.sample(range(2500), 1500) + [5, 5, 7]
    stamps = [rng.randint(0, 4_102_444_800 * 10**9) for _ in batches]
    stamps[:3] = [0, 951_782_400 * 10**9 + 999_999, 1_709_164_799_999_000_000]
    accepted = [
        (b, rng.randint(0, 4), s, s + rng.randint(0, 10**12))
        for b, s in zip(batches, stamps, strict=True)
    ]
    columns = [np.array(c, dtype=np.int64) for c in zip(*accepted, strict=True)]
    place = b'4242,0,"a,host"'
    got = _core.join_attempt_rows(part, *columns, place)
    assert got == reference_join(part, accepted, place)


def test_a_part_without_accepted_attempts_keeps_its_own_attempt_numbers() -> None:
    part = b"0,3,node000,process000007,2,2,0.5000,succeeded,\nnot a row\n"
    empty = np.zeros(0, dtype=np.int64)
    got = _core.join_attempt_rows(part, empty, empty, empty, empty, b"1,0,h")
    assert got == b"0,3,node000,process000007,2,2,0.5000,succeeded,,,,,,\n"


# ---- whole jobs -------------------------------------------------------------------------

FILES = 20_000
NEW_COLUMNS = ["start_time", "end_time", "pid", "node_index", "host"]


def attempt_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "step" / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def output_names(run_dir: Path) -> list[str]:
    return (run_dir / "step" / "outputs" / "out").read_text(encoding="utf-8").splitlines()


def test_twenty_thousand_one_file_mini_batches_have_one_row_each(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=FILES, mini_batch_size=1, concurrency=2)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    names = output_names(result.run_dir)
    assert sorted(names) == [f"f{i:05d}.txt" for i in range(FILES)]
    rows = attempt_rows(result.run_dir)
    assert sorted(int(r["index"]) for r in rows) == list(range(FILES))
    assert {(r["attempt"], r["status"]) for r in rows} == {("1", "succeeded")}
    assert all(r[c] for r in rows for c in NEW_COLUMNS)  # the driver's join found every one
    assert "20000 total, 20000 completed, 0 failed" in result.job_result()


KILLS_DRIVER = kills_driver_at(12_000)


def test_a_killed_one_file_per_batch_job_resumes_with_each_row_once(tmp_path: Path) -> None:
    write_job(tmp_path, KILLS_DRIVER, files=FILES, mini_batch_size=1, concurrency=2)
    first = run_job(tmp_path)
    assert first.returncode == -9, first.stderr
    assert not (first.run_dir / "step" / "outputs" / "out").exists()
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    names = output_names(first.run_dir)
    assert sorted(names) == [f"f{i:05d}.txt" for i in range(FILES)]  # each exactly once
    rows = attempt_rows(first.run_dir)
    # The killed driver's workers' rows have the five columns empty (README, "Logs"), the
    # resumed run's have them all: each run accepted a mini-batch at most once, and the
    # two together every one.
    killed = [int(r["index"]) for r in rows if not any(r[c] for c in NEW_COLUMNS)]
    resumed_rows = [int(r["index"]) for r in rows if all(r[c] for c in NEW_COLUMNS)]
    assert len(killed) + len(resumed_rows) == len(rows)
    assert len(set(killed)) == len(killed) and len(set(resumed_rows)) == len(resumed_rows)
    assert set(killed) | set(resumed_rows) == set(range(FILES))
    assert resumed_rows  # mini-batch 12,000 at least ran again
    assert {r["status"] for r in rows} == {"succeeded"}


def test_distinct_processes_are_the_ids_present_ascending() -> None:
    assert distinct_processes(np.array([7, 1, 7, 0, 1], dtype=np.uint32)) == [0, 1, 7]
    assert distinct_processes(np.zeros(0, dtype=np.uint32)) == []
    assert distinct_processes(np.array([1 << 30, 2, 1 << 30], dtype=np.uint32)) == [2, 1 << 30]
