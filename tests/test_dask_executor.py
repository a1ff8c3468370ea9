"""The Dask executor on a real loopback cluster (tests/dask_cluster.py): a step's
instance_count nodes on Dask workers give the local run's output; a node lost mid-run
costs nothing but time; bad clusters are bad input (exit 2)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, RUN_TIMEOUT_S, run_cli, write_job

pytest.importorskip("distributed")

from dask_cluster import DaskCluster, dask_cluster_fixture  # noqa: E402,F401 - the fixture

COMPUTE = "compute: cpu-cluster\n"


def _nodes(run_dir: Path) -> dict[str, str]:
    """node folder -> Dask worker address, from logs/sys/nodes.txt."""
    text = (run_dir / "step" / "logs" / "sys" / "nodes.txt").read_text()
    return dict(re.findall(r"^(node\d+) host=\S+ dask_worker=(\S+)$", text, re.M))


def test_cluster_run_gives_the_local_output(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    pipeline = write_job(
        tmp_path,
        ECHO_SCRIPT,
        files=60,
        mini_batch_size=4,
        concurrency=2,
        instances=2,
        extra_step=COMPUTE,
    )
    local = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "local"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert "simulated on this machine" in local.stderr
    remote = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "remote"),
        "--compute",
        f"cpu-cluster={dask_cluster.address}",
        cwd=tmp_path,
    )
    assert remote.returncode == 0, remote.stderr
    assert "simulated" not in remote.stderr
    out = "step/outputs/out"
    assert (tmp_path / "remote" / out).read_bytes() == (tmp_path / "local" / out).read_bytes()
    nodes = _nodes(tmp_path / "remote")
    assert sorted(nodes) == ["node000", "node001"]
    assert len(set(nodes.values())) == 2
    assert set(nodes.values()) <= set(dask_cluster.worker_pids())
    stdout_logs = tmp_path / "remote" / "step" / "logs" / "user" / "stdout"
    assert sorted(p.name for p in stdout_logs.iterdir()) == ["node000", "node001"]


SLOW_SCRIPT = """
import os, time

def run(mini_batch):
    time.sleep(0.8)
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_lost_node_costs_no_row(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    pipeline = write_job(
        tmp_path,
        SLOW_SCRIPT,
        files=24,
        mini_batch_size=1,
        concurrency=2,
        instances=2,
        extra_step=COMPUTE,
        max_retries=3,
    )
    run_dir = tmp_path / "run"
    proc = dask_cluster.start_run(pipeline, run_dir, tmp_path)
    try:
        parts = run_dir / "step" / "logs" / "sys" / "job_report" / "parts"
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # Kill node 1's Dask worker once every node has ended a few mini-batches.
        while time.monotonic() < deadline:
            rows = "".join(p.read_text() for p in parts.glob("*.csv")) if parts.is_dir() else ""
            if rows.count("node001") >= 2 and rows.count("node000") >= 2:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        victim = _nodes(run_dir)["node001"]
        os.kill(dask_cluster.worker_pids()[victim], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    rows = (run_dir / "step" / "outputs" / "out").read_text().splitlines()
    assert sorted(rows) == sorted(f"f{i:05d}.txt" for i in range(24))  # each exactly once
    errors = (run_dir / "step" / "logs" / "job_error.txt").read_text()
    assert "node 1" in errors and victim in errors and "was lost" in errors


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_scheduler_is_bad_input(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, extra_step=COMPUTE)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        "--compute",
        f"cpu-cluster={address}",
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"cannot reach the Dask scheduler at {address}" in proc.stderr
    assert "--compute cpu-cluster=" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "step" / "outputs").exists()


def test_more_nodes_than_workers_is_bad_input(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=3, extra_step=COMPUTE)
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        "--compute",
        f"cpu-cluster={dask_cluster.address}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "has 2 worker(s); the step asks for instance_count 3" in proc.stderr


def _can_hide_folders() -> bool:
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0


def test_a_node_that_cannot_see_the_run_folder_is_named(tmp_path: Path) -> None:
    if not _can_hide_folders():
        pytest.skip("needs unshare --mount (root)")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cluster = DaskCluster.start(tmp_path / "dask", 1)
    try:
        cluster.add_worker(1, hide=run_dir)  # this node's run folder is an empty tmpfs
        cluster.wait_for_workers(2)
        pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, extra_step=COMPUTE)
        proc = run_cli(
            "run",
            str(pipeline),
            "--run-dir",
            str(run_dir),
            "--compute",
            f"cpu-cluster={cluster.address}",
            cwd=tmp_path,
        )
    finally:
        cluster.stop()
    assert proc.returncode == 2, proc.stderr
    assert f"on host {socket.gethostname()}" in proc.stderr
    assert "cannot use the run folder" in proc.stderr
    assert "dask-token" in proc.stderr
    assert "Traceback" not in proc.stderr


TABLE_SCRIPT = """
import pandas as pd

def run(mini_batch):
    assert isinstance(mini_batch, pd.DataFrame)
    return mini_batch
"""


def test_a_tabular_cluster_run_gives_the_local_output(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    from test_table_jobs import IRIS_MLTABLE, iris_rows, write_table_job

    rows = iris_rows(2000)
    pipeline = write_table_job(
        tmp_path,
        IRIS_MLTABLE,
        {"iris.csv": "sepal_length,sepal_width,n,species\n" + "\n".join(rows) + "\n"},
        TABLE_SCRIPT,
        mini_batch_size="4kb",
        extra_step="resources: {instance_count: 2}\n" + COMPUTE,
    )
    local = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "local"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    remote = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "remote"),
        "--compute",
        f"cpu-cluster={dask_cluster.address}",
        cwd=tmp_path,
    )
    assert remote.returncode == 0, remote.stderr
    out = "step/outputs/out"
    assert (tmp_path / "remote" / out).read_bytes() == (tmp_path / "local" / out).read_bytes()
    assert (tmp_path / "remote" / out).read_text().splitlines() == [
        r.replace(",", " ") for r in rows
    ]
    assert sorted(_nodes(tmp_path / "remote")) == ["node000", "node001"]


def test_a_killed_cluster_run_resumes(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    pipeline = write_job(
        tmp_path,
        SLOW_SCRIPT.replace("0.8", "0.3"),
        files=30,
        mini_batch_size=1,
        concurrency=2,
        instances=2,
        extra_step=COMPUTE,
    )
    run_dir = tmp_path / "run"
    compute = f"cpu-cluster={dask_cluster.address}"
    proc = dask_cluster.start_run(pipeline, run_dir, tmp_path, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        parts = run_dir / "step" / "logs" / "sys" / "job_report" / "parts"
        while time.monotonic() < deadline:  # a few accepted, then the driver dies
            rows = "".join(p.read_text() for p in parts.glob("*.csv")) if parts.is_dir() else ""
            if rows.count("\n") >= 6:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (run_dir / "step" / "outputs" / "out").exists()
    resumed = run_cli("run", "--resume", str(run_dir), "--compute", compute, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    rows = (run_dir / "step" / "outputs" / "out").read_text().splitlines()
    assert sorted(rows) == sorted(f"f{i:05d}.txt" for i in range(30))  # each exactly once


HANG_ONCE_SCRIPT = """
import os, time

def run(mini_batch):
    marker = os.path.join(os.path.dirname(mini_batch[0]), "..", "hung-once")
    if any(p.endswith("f00005.txt") for p in mini_batch) and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(600)  # past retry_settings.timeout: the node's watchdog reports it
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_timed_out_attempt_on_a_node_is_retried(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    pipeline = write_job(
        tmp_path,
        HANG_ONCE_SCRIPT,
        files=20,
        mini_batch_size=2,
        concurrency=2,
        instances=2,
        timeout=3,
        extra_step=COMPUTE,
    )
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        "--compute",
        f"cpu-cluster={dask_cluster.address}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert rows == [f"f{i:05d}.txt" for i in range(20)]
    errors = (tmp_path / "run" / "step" / "logs" / "job_error.txt").read_text()
    assert "mini-batch 2 attempt 1" in errors and "timed_out" in errors
    assert "run() exceeded retry_settings.timeout of 3 s" in errors


def test_parajob_run_takes_a_compute_mapping(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=12, instances=2, extra_step=COMPUTE)
    code = (
        f"import parajob\n"
        f"r = parajob.run({str(pipeline)!r}, run_dir={str(tmp_path / 'run')!r}, "
        f"compute={{'cpu-cluster': {dask_cluster.address!r}}})\n"
        f"print(r.status)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "succeeded"
    assert sorted(_nodes(tmp_path / "run")) == ["node000", "node001"]
    rows = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert rows == [f"f{i:05d}.txt" for i in range(12)]


def test_a_silent_node_is_lost_after_the_node_timeout(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    pipeline = write_job(
        tmp_path,
        SLOW_SCRIPT.replace("0.8", "0.3"),
        files=24,
        mini_batch_size=1,
        concurrency=1,
        instances=2,
        extra_step=COMPUTE,
    )
    run_dir = tmp_path / "run"
    proc = dask_cluster.start_run(
        pipeline, run_dir, tmp_path, env={**os.environ, "PARAJOB_NODE_TIMEOUT": "3"}
    )
    stopped = None
    try:
        nodes_file = run_dir / "step" / "logs" / "sys" / "nodes.txt"
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not nodes_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        victim = _nodes(run_dir)["node001"]
        # Stop (not kill) the Dask worker and its node process: the connection stays open,
        # no frame comes: only the silence says the node is gone.
        stopped = dask_cluster.worker_pids()[victim]
        os.killpg(stopped, signal.SIGSTOP)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if stopped is not None:
            os.killpg(stopped, signal.SIGCONT)
    assert proc.returncode == 0, stderr
    assert "no word from it for 3 s" in stderr
    rows = (run_dir / "step" / "outputs" / "out").read_text().splitlines()
    assert rows == [f"f{i:05d}.txt" for i in range(24)]
