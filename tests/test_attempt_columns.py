"""When and where each attempt ran: processed_mini-batches.csv's start_time, end_time, pid,
node_index and host columns, and the hosts in job_result.txt / job_result.json (issues 10
and 11), on this machine and on a loopback Dask cluster."""

from __future__ import annotations

import csv
import json
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import kills_driver_at, run_cli, run_job, write_job

OLD_COLUMNS = [
    "index",
    "attempt",
    "node",
    "process",
    "items_in",
    "items_out",
    "seconds",
    "status",
    "error",
]
NEW_COLUMNS = ["start_time", "end_time", "pid", "node_index", "host"]
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

# Every worker prints its pid in init(); each worker's first mini-batch waits (polling,
# with a deadline) until every worker has one, so that both nodes run some.
MEETING = """
import os, pathlib, time
MARKS = pathlib.Path(__file__).resolve().parent.parent / "marks"
met = False

def init():
    print(f"worker pid {os.getpid()}", flush=True)

def run(mini_batch):
    global met
    if not met:
        MARKS.mkdir(exist_ok=True)
        (MARKS / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(MARKS.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        met = True
    return [os.path.basename(p) for p in mini_batch]
"""

# The mini-batch holding f00002 fails its first try after 50 ms of work.
FAILS_ONCE = """
import os, pathlib, time
MARK = pathlib.Path(__file__).resolve().parent.parent / "tried"

def run(mini_batch):
    if any(p.endswith("f00002.txt") for p in mini_batch) and not MARK.exists():
        MARK.touch()
        time.sleep(0.05)
        raise ValueError("first try of f00002")
    return [os.path.basename(p) for p in mini_batch]
"""


def attempts(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    path = run_dir / "step" / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def when(row: dict[str, str]) -> tuple[datetime, datetime]:
    assert ISO_MS.fullmatch(row["start_time"]), row
    assert ISO_MS.fullmatch(row["end_time"]), row
    return (_parse(row["start_time"]), _parse(row["end_time"]))


def _parse(text: str) -> datetime:
    # "...Z": Python 3.10's fromisoformat reads an offset only as +00:00 (3.11 reads Z)
    return datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


def printed_pids(run_dir: Path) -> dict[tuple[str, str], set[str]]:
    """(node folder, process name) -> the pids its workers printed in init()."""
    pids: dict[tuple[str, str], set[str]] = {}
    for log in (run_dir / "step" / "logs" / "user" / "stdout").glob("*/*.stdout.txt"):
        key = (log.parent.name, log.name.split(".")[0])
        pids.setdefault(key, set()).update(re.findall(r"worker pid (\d+)", log.read_text()))
    return pids


def job_result_json(run_dir: Path) -> Any:
    return json.loads((run_dir / "step" / "logs" / "job_result.json").read_text())


def check_where(rows: list[dict[str, str]], run_dir: Path) -> None:
    """Every row: ordered times, a pid its process printed, its node's index, this host."""
    pids = printed_pids(run_dir)
    for row in rows:
        start, end = when(row)
        assert start <= end, row
        # run() alone is within the claim-to-publish span (stamps truncated to the ms).
        assert float(row["seconds"]) <= (end - start).total_seconds() + 0.001, row
        assert row["pid"] in pids[(row["node"], row["process"])], (row, pids)
        assert int(row["node_index"]) == int(row["node"].removeprefix("node")), row
        assert row["host"] == socket.gethostname(), row
    assert {row["node_index"] for row in rows} == {"0", "1"}


def test_a_local_run_says_when_and_where_each_attempt_ran(tmp_path: Path) -> None:
    write_job(tmp_path, MEETING, files=12, mini_batch_size=2, instances=2, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    columns, rows = attempts(result.run_dir)
    assert columns == OLD_COLUMNS + NEW_COLUMNS  # the first cut's columns first, unchanged
    assert sorted(int(r["index"]) for r in rows) == list(range(6))
    check_where(rows, result.run_dir)

    host = socket.gethostname()
    text = result.job_result()
    assert f"hosts:                node000 {host}\n" in text
    assert f"\n                      node001 {host}\n" in text
    saved = job_result_json(result.run_dir)
    assert saved["hosts"] == [
        {"node": 0, "host": host, "address": ""},
        {"node": 1, "host": host, "address": ""},
    ]
    settings = saved["settings"]
    assert (
        settings["executor"],
        settings["instance_count"],
        settings["nodes"],
        settings["workers_per_node"],
        settings["mini_batch_size"],
    ) == ("local", 2, 2, 1, "2")
    assert settings["limits"]["max_retries"] == 2
    assert (saved["total_batches"], saved["completed_batches"], saved["items_out"]) == (6, 6, 12)
    assert ISO_MS.fullmatch(saved["started_at"]) and ISO_MS.fullmatch(saved["ended_at"])
    assert saved["started_at"] <= min(r["start_time"] for r in rows)
    assert max(r["end_time"] for r in rows) <= saved["ended_at"]
    assert saved["failures"] == []


def test_a_retried_attempt_has_two_rows_with_their_own_times(tmp_path: Path) -> None:
    write_job(tmp_path, FAILS_ONCE, files=6, mini_batch_size=2, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    _, rows = attempts(result.run_dir)
    tries = sorted((r for r in rows if r["index"] == "1"), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"]) for r in tries] == [("1", "raised"), ("2", "succeeded")]
    assert tries[0]["error"] == "ValueError: first try of f00002"
    (first_start, first_end), (second_start, second_end) = when(tries[0]), when(tries[1])
    assert first_start < first_end <= second_start <= second_end  # the retry came after
    for row in tries:  # the driver's row (the failure) names its worker as the worker's does
        assert row["pid"].isdigit() and row["node_index"] == "0"
        assert row["host"] == socket.gethostname()
    assert tries[0]["pid"] == tries[1]["pid"]  # a raise costs the worker nothing


KILLS_DRIVER = kills_driver_at(9)


def test_rows_of_a_killed_driver_keep_their_columns_empty_after_resume(tmp_path: Path) -> None:
    write_job(tmp_path, KILLS_DRIVER, files=20, mini_batch_size=1, concurrency=1)
    first = run_job(tmp_path)
    assert first.returncode == -9, first.stderr
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    columns, rows = attempts(first.run_dir)
    assert columns == OLD_COLUMNS + NEW_COLUMNS
    filled = [r for r in rows if all(r[c] for c in NEW_COLUMNS)]
    empty = [r for r in rows if not any(r[c] for c in NEW_COLUMNS)]
    assert len(filled) + len(empty) == len(rows)  # all five columns, or none
    assert empty  # the killed driver's workers' rows (its worker ran on a little)
    assert {int(r["index"]) for r in filled} >= set(range(10, 20))  # the resumed run's
    for row in filled:
        when(row)
    assert {r["status"] for r in rows} == {"succeeded"}


pytest.importorskip("distributed")

from dask_cluster import DaskCluster, dask_cluster_fixture  # noqa: E402,F401 - the fixture


def test_a_dask_run_names_each_nodes_host_and_worker(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    # 24 mini-batches: more than the first attempts a node asks for (2 x workers + 4), so
    # that both nodes get some.
    pipeline = write_job(
        tmp_path,
        MEETING,
        files=24,
        mini_batch_size=1,
        instances=2,
        concurrency=1,
        extra_step="compute: cpu-cluster\n",
    )
    run_dir = tmp_path / "run"
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(run_dir),
        "--compute",
        f"cpu-cluster={dask_cluster.address}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    host = socket.gethostname()
    saved = job_result_json(run_dir)
    assert [(h["node"], h["host"]) for h in saved["hosts"]] == [(0, host), (1, host)]
    addresses = [h["address"] for h in saved["hosts"]]
    assert sorted(addresses) == sorted(dask_cluster.worker_pids())  # two distinct workers
    assert saved["settings"]["executor"] == "dask"
    assert saved["settings"]["scheduler"] == dask_cluster.address
    text = (run_dir / "step" / "logs" / "job_result.txt").read_text()
    for node, address in enumerate(addresses):
        assert f"node00{node} {host} (Dask worker {address})" in text
    columns, rows = attempts(run_dir)
    assert columns == OLD_COLUMNS + NEW_COLUMNS
    assert sorted(int(r["index"]) for r in rows) == list(range(24))
    assert {r["attempt"] for r in rows} == {"1"}
    check_where(rows, run_dir)  # the pids are the node's worker processes'


def test_a_retry_on_a_dask_cluster_keeps_the_drivers_attempt_numbers(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    # A node numbers its local queue's attempts from its first sighting of a batch; the
    # report must give the driver's (a retry that lands on the other node is attempt 2).
    pipeline = write_job(
        tmp_path,
        FAILS_ONCE,
        files=12,
        mini_batch_size=2,
        instances=2,
        concurrency=1,
        extra_step="compute: cpu-cluster\n",
    )
    run_dir = tmp_path / "run"
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(run_dir),
        "--compute",
        f"cpu-cluster={dask_cluster.address}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    _, rows = attempts(run_dir)
    tries = sorted((r for r in rows if r["index"] == "1"), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"]) for r in tries] == [("1", "raised"), ("2", "succeeded")]
    for row in tries:
        start, end = when(row)
        assert start <= end and row["pid"].isdigit() and row["host"] == socket.gethostname()
        assert int(row["node_index"]) == int(row["node"].removeprefix("node"))
    assert when(tries[0])[1] <= when(tries[1])[0]
