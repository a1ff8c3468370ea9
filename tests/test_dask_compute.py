"""Choosing where a step's nodes run: --compute NAME=ADDRESS / parajob.run(compute=), the
note when instance_count > 1 runs on this machine, and a local run that never imports
distributed. No cluster needed here (tests/test_dask_executor.py has one)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, run_cli, write_job

import parajob


def test_instance_count_on_this_machine_prints_a_note(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, concurrency=1,
                         extra_step="compute: cpu-cluster\n")
    proc = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("parajob: note: step step: the 2 nodes of instance_count are simulated on this "
            "machine (to run them on a Dask cluster: --compute cpu-cluster=tcp://HOST:PORT)"
            in proc.stderr)
    environment = (tmp_path / "run" / "step" / "logs" / "environment.txt").read_text()
    assert "cpu-cluster -> this machine" in environment


def test_one_node_prints_no_note(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=1)
    proc = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "simulated" not in proc.stderr


def test_oversubscribed_simulated_nodes_are_warned_about(tmp_path: Path) -> None:
    cores = len(__import__("os").sched_getaffinity(0))
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=40, mini_batch_size=1, instances=2,
                         concurrency=cores)
    proc = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (f"2 simulated node(s) x {cores} workers = {2 * cores} processes on {cores} "
            "core(s): they oversubscribe this machine") in proc.stderr


@pytest.mark.parametrize("value, message", [
    ("cpu-cluster", "expected NAME=VALUE"),
    ("cpu-cluster=http://host:8786", "is not a Dask scheduler address (scheme 'http'"),
    ("cpu-cluster=tcp://host", "expected tcp://HOST:PORT"),
])
def test_a_bad_compute_option_is_bad_input(tmp_path: Path, value: str, message: str) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2)
    proc = run_cli("run", str(pipeline), "--compute", value, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--compute" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_compute_does_not_go_with_serial(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    proc = run_cli("run", str(pipeline), "--serial", "--compute", "c=tcp://127.0.0.1:1",
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "does not go with --compute" in proc.stderr


@pytest.mark.parametrize("value, message", [
    ("tcp://host:8786", "expected a mapping compute name -> scheduler address"),
    ({"cpu-cluster": "ftp://host:1"}, "is not a Dask scheduler address"),
])
def test_a_bad_compute_argument_raises_a_spec_error(tmp_path: Path, value: object,
                                                    message: str) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    with pytest.raises(parajob.SpecError) as caught:
        parajob.run(pipeline, run_dir=tmp_path / "run", compute=value)  # type: ignore[arg-type]
    assert "compute" in str(caught.value) and message in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_an_unmapped_compute_runs_here_without_importing_distributed(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, concurrency=1,
                         extra_step="compute: cpu-cluster\n")
    code = textwrap.dedent(f"""
        import sys, parajob
        result = parajob.run({str(pipeline)!r}, run_dir={str(tmp_path / "run")!r},
                             compute={{"gpu-cluster": "tcp://127.0.0.1:1"}})
        assert result.status == "succeeded", result
        print("distributed" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_nodes_go_to_distinct_hosts_first() -> None:
    from parajob.executors.dask import choose_workers

    workers = {"tcp://10.0.0.1:1": {"host": "10.0.0.1"}, "tcp://10.0.0.1:2": {"host": "10.0.0.1"},
               "tcp://10.0.0.2:1": {"host": "10.0.0.2"}}
    assert choose_workers(workers, 2) == [("tcp://10.0.0.1:1", "10.0.0.1"),
                                          ("tcp://10.0.0.2:1", "10.0.0.2")]
    assert len(choose_workers(workers, 3)) == 3
    assert len(choose_workers(workers, 4)) == 3  # fewer than asked: the caller refuses
