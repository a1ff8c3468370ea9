"""A user's trial of a Dask cluster run (issue 10 review): what a new user gets wrong or
hits, each on real processes (tests/dask_cluster.py: `dask scheduler` + `dask worker`).

- the Azure YAML's `compute: azureml:cpu-cluster` is the compute `--compute cpu-cluster=`
  maps (the README's command), not a silent local run;
- a `--compute` / `compute=` name that no step uses (a typo) is bad input, exit 2;
- the resume command printed after Ctrl-C gives `--compute` again (else the resume runs
  the cluster step on this machine);
- a scheduler that cannot import parajob says so, not only Dask's "different environments";
- `parajob show` on a cluster run lists its hosts (as job_result.txt does);
- an address whose port is not a scheduler's (the dashboard's) is bad input, not a hang
  or a MemoryError traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, RUN_TIMEOUT_S, run_cli, write_job

import parajob

pytest.importorskip("distributed")

from dask_cluster import DaskCluster, dask_cluster_fixture  # noqa: E402,F401 - the fixture

AZURE_COMPUTE = "compute: azureml:cpu-cluster\n"  # as examples/word_count writes it


def test_an_azureml_compute_is_mapped_by_its_bare_name_and_shown_with_its_hosts(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    pipeline = write_job(
        tmp_path, ECHO_SCRIPT, files=12, instances=2, concurrency=1, extra_step=AZURE_COMPUTE
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
    assert "simulated" not in proc.stderr
    logs = tmp_path / "run" / "step" / "logs"
    assert "channel=tcp+token" in (logs / "sys" / "nodes.txt").read_text()
    assert (
        f"azureml:cpu-cluster -> the Dask cluster at {dask_cluster.address}"
        in (logs / "environment.txt").read_text()
    )
    # parajob show lists the hosts as job_result.txt does, and why there are no samples.
    shown = run_cli("show", str(tmp_path / "run"), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    hosts = re.findall(
        r"^  (?:hosts:)?\s+(node00\d) \S+ \(Dask worker (\S+)\)$", shown.stdout, re.M
    )
    assert [node for node, _ in hosts] == ["node000", "node001"], shown.stdout
    assert {address for _, address in hosts} <= set(dask_cluster.worker_pids())
    assert "(not sampled on Dask cluster nodes yet)" in shown.stdout


@pytest.mark.parametrize("extra_step", ["", "compute: cpu-cluster\n", AZURE_COMPUTE])
def test_a_compute_name_no_step_uses_is_bad_input(tmp_path: Path, extra_step: str) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, extra_step=extra_step)
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        "--compute",
        "cpu-clustr=tcp://127.0.0.1:1",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "--compute cpu-clustr=tcp://127.0.0.1:1: no step of the pipeline has compute 'cpu-clustr'"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
    with pytest.raises(parajob.SpecError, match="no step of the pipeline has compute"):
        parajob.run(pipeline, run_dir=tmp_path / "api", compute={"cpu-clustr": "h:1"})
    assert not (tmp_path / "api").exists()


def test_the_computes_file_may_map_computes_no_step_uses(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    (tmp_path / "computes.yml").write_text("computes:\n  gpu-cluster: tcp://127.0.0.1:1\n")
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        cwd=tmp_path,
        env={"PARAJOB_COMPUTES": str(tmp_path / "computes.yml")},
    )
    assert proc.returncode == 0, proc.stderr


SLOW_SCRIPT = """
import os, time

def run(mini_batch):
    time.sleep(0.3)
    return [os.path.basename(p) for p in mini_batch]
"""


def test_the_resume_command_after_ctrl_c_gives_the_compute_again(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    pipeline = write_job(
        tmp_path,
        SLOW_SCRIPT,
        files=30,
        mini_batch_size=1,
        concurrency=1,
        instances=2,
        extra_step="compute: cpu-cluster\n",
    )
    run_dir = tmp_path / "run"
    proc = dask_cluster.start_run(pipeline, run_dir, tmp_path, stdout=subprocess.DEVNULL)
    try:
        parts = run_dir / "step" / "logs" / "sys" / "job_report" / "parts"
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:  # a few mini-batches done, then Ctrl-C
            rows = "".join(p.read_text() for p in parts.glob("*.csv")) if parts.is_dir() else ""
            if rows.count("\n") >= 4:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    hint = re.search(r"resume with: (parajob run --resume .*)$", stderr, re.M)
    assert hint is not None, stderr
    assert f"--compute cpu-cluster={dask_cluster.address}" in hint.group(1)
    resumed = run_cli(*shlex.split(hint.group(1))[1:], cwd=tmp_path)  # as the user would
    assert resumed.returncode == 0, resumed.stderr
    assert "simulated" not in resumed.stderr
    out = (run_dir / "step" / "outputs" / "out").read_text().splitlines()
    assert sorted(out) == sorted(f"f{i:05d}.txt" for i in range(30))  # each exactly once


def test_a_scheduler_without_parajob_is_named_with_the_fix(tmp_path: Path) -> None:
    # The scheduler unpickles the node's task (distributed >= 2024): one whose Python has
    # a parajob without the Dask executor (an older one; here a stub package) fails it.
    stub = tmp_path / "stub"
    (stub / "parajob").mkdir(parents=True)
    (stub / "parajob" / "__init__.py").write_text("")
    (tmp_path / "dask").mkdir()
    cluster = DaskCluster(tmp_path / "dask")
    try:
        workers_env = cluster.env
        cluster.env = {**os.environ, "PYTHONPATH": str(stub)}
        cluster._start_scheduler()
        cluster.env = workers_env
        for i in range(2):
            cluster.add_worker(i)
        cluster.wait_for_workers(2)
        pipeline = write_job(
            tmp_path, ECHO_SCRIPT, instances=2, concurrency=1, extra_step="compute: cpu-cluster\n"
        )
        proc = run_cli(
            "run",
            str(pipeline),
            "--run-dir",
            str(tmp_path / "run"),
            "--compute",
            f"cpu-cluster={cluster.address}",
            cwd=tmp_path,
        )
    finally:
        cluster.stop()
    assert proc.returncode == 2, proc.stderr
    assert "could not start" in proc.stderr
    assert (
        "hint: the Dask scheduler and every worker unpickle the node's task: each must "
        f"import the parajob this machine runs ({parajob.__version__}"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr


def _answer_like_http(server: socket.socket) -> None:
    """What a dashboard or a proxy says to Dask's handshake: an HTTP error, then close."""
    conn, _ = server.accept()
    with conn:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")


@pytest.mark.parametrize("answers", [False, True], ids=["silent", "http"])
def test_a_port_that_is_not_a_scheduler_is_bad_input(tmp_path: Path, answers: bool) -> None:
    # The dashboard's port (8787) instead of the scheduler's: the TCP connect succeeds,
    # the Dask handshake does not (Dask itself would wait for ever, or raise MemoryError).
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, extra_step="compute: cpu-cluster\n")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        if answers:
            threading.Thread(target=_answer_like_http, args=(server,), daemon=True).start()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        proc = run_cli(
            "run",
            str(pipeline),
            "--run-dir",
            str(tmp_path / "run"),
            "--compute",
            f"cpu-cluster={address}",
            cwd=tmp_path,
            timeout=90,
        )
    assert proc.returncode == 2, proc.stderr
    assert f"--compute cpu-cluster={address}" in proc.stderr
    assert "answer as a Dask scheduler" in proc.stderr
    assert "8787 is its dashboard" in proc.stderr
    assert str(Path(parajob.__file__).parent) not in proc.stderr  # no traceback of parajob's
    assert not (tmp_path / "run" / "step" / "outputs").exists()


def test_a_refused_cluster_step_leaves_no_run_folder(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on: no scheduler there
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, extra_step="compute: cpu-cluster\n")
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
    assert "cannot reach the Dask scheduler" in proc.stderr
    assert not (tmp_path / "run").exists()  # not even parajob-run.json: nothing ran
