"""Choosing where a step's nodes run: --compute NAME=ADDRESS / parajob.run(compute=), the
note when instance_count > 1 runs on this machine, and a local run that never imports
distributed. No cluster needed here (tests/test_dask_executor.py has one)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, run_cli, write_job

import parajob


def test_instance_count_on_this_machine_prints_a_note(tmp_path: Path) -> None:
    pipeline = write_job(
        tmp_path, ECHO_SCRIPT, instances=2, concurrency=1, extra_step="compute: cpu-cluster\n"
    )
    proc = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "parajob: note: step step: the 2 nodes of instance_count are simulated on this "
        "machine (to run them on a Dask cluster: --compute cpu-cluster=tcp://HOST:PORT)"
        in proc.stderr
    )
    environment = (tmp_path / "run" / "step" / "logs" / "environment.txt").read_text()
    assert "cpu-cluster -> this machine" in environment


def test_one_node_prints_no_note(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=1)
    proc = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "simulated" not in proc.stderr


def test_oversubscribed_simulated_nodes_are_warned_about(tmp_path: Path) -> None:
    cores = len(__import__("os").sched_getaffinity(0))
    pipeline = write_job(
        tmp_path, ECHO_SCRIPT, files=40, mini_batch_size=1, instances=2, concurrency=cores
    )
    proc = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        f"2 simulated node(s) x {cores} workers = {2 * cores} processes on {cores} "
        "core(s): they oversubscribe this machine"
    ) in proc.stderr


@pytest.mark.parametrize(
    "value, message",
    [
        ("cpu-cluster", "expected NAME=VALUE"),
        ("cpu-cluster=http://host:8786", "is not a Dask scheduler address (scheme 'http'"),
        ("cpu-cluster=tcp://host", "expected tcp://HOST:PORT"),
    ],
)
def test_a_bad_compute_option_is_bad_input(tmp_path: Path, value: str, message: str) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2)
    proc = run_cli("run", str(pipeline), "--compute", value, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--compute" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_compute_does_not_go_with_serial(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    proc = run_cli(
        "run", str(pipeline), "--serial", "--compute", "c=tcp://127.0.0.1:1", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "does not go with --compute" in proc.stderr


@pytest.mark.parametrize(
    "value, message",
    [
        ("tcp://host:8786", "expected a mapping compute name -> scheduler address"),
        ({"cpu-cluster": "ftp://host:1"}, "is not a Dask scheduler address"),
    ],
)
def test_a_bad_compute_argument_raises_a_spec_error(
    tmp_path: Path, value: object, message: str
) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    with pytest.raises(parajob.SpecError) as caught:
        parajob.run(pipeline, run_dir=tmp_path / "run", compute=value)  # type: ignore[arg-type]
    assert "compute" in str(caught.value) and message in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_an_unmapped_compute_runs_here_without_importing_distributed(tmp_path: Path) -> None:
    pipeline = write_job(
        tmp_path, ECHO_SCRIPT, instances=2, concurrency=1, extra_step="compute: cpu-cluster\n"
    )
    # In a computes file: a compute= name that no step uses is bad input (test_review_dask).
    (tmp_path / "computes.yml").write_text("computes:\n  gpu-cluster: tcp://127.0.0.1:1\n")
    code = textwrap.dedent(f"""
        import sys, parajob
        result = parajob.run({str(pipeline)!r}, run_dir={str(tmp_path / "run")!r})
        assert result.status == "succeeded", result
        print("distributed" in sys.modules)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PARAJOB_COMPUTES": str(tmp_path / "computes.yml")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_nodes_go_to_distinct_hosts_first() -> None:
    from parajob.executors.dask import choose_workers

    workers = {
        "tcp://10.0.0.1:1": {"host": "10.0.0.1"},
        "tcp://10.0.0.1:2": {"host": "10.0.0.1"},
        "tcp://10.0.0.2:1": {"host": "10.0.0.2"},
    }
    assert choose_workers(workers, 2) == [
        ("tcp://10.0.0.1:1", "10.0.0.1"),
        ("tcp://10.0.0.2:1", "10.0.0.2"),
    ]
    assert len(choose_workers(workers, 3)) == 3
    assert len(choose_workers(workers, 4)) == 3  # fewer than asked: the caller refuses


# ---- the computes file: $PARAJOB_COMPUTES, else $XDG_CONFIG_HOME (~/.config)/parajob/ ----


def _unreachable() -> str:
    import socket

    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _no_file_env(tmp_path: Path) -> dict[str, str]:
    """An environment where only what the test writes is a computes file."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PARAJOB_COMPUTES", "XDG_CONFIG_HOME")}
    env["HOME"] = str(tmp_path / "home")
    return env


def _run_env(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    pipeline = write_job(
        tmp_path, ECHO_SCRIPT, instances=2, concurrency=1, extra_step="compute: cpu-cluster\n"
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "parajob",
            "run",
            str(pipeline),
            "--run-dir",
            str(tmp_path / "run"),
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("where", ["PARAJOB_COMPUTES", "XDG_CONFIG_HOME", "HOME"])
def test_a_computes_file_maps_the_step_to_its_cluster(tmp_path: Path, where: str) -> None:
    address = _unreachable()  # reaching for it proves the mapping was used
    env = _no_file_env(tmp_path)
    folder = {
        "PARAJOB_COMPUTES": tmp_path / "etc",
        "XDG_CONFIG_HOME": tmp_path / "xdg" / "parajob",
        "HOME": tmp_path / "home" / ".config" / "parajob",
    }[where]
    folder.mkdir(parents=True)
    file = folder / "computes.yml"
    file.write_text(f"computes:\n  cpu-cluster: {address}\n  other: tcp://10.0.0.9:8786\n")
    if where == "PARAJOB_COMPUTES":
        env[where] = str(file)
    elif where == "XDG_CONFIG_HOME":
        env[where] = str(tmp_path / "xdg")
    proc = _run_env(tmp_path, env)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot reach the Dask scheduler at {address}" in proc.stderr
    assert f"computes.cpu-cluster in {file}" in proc.stderr  # where the mapping came from
    assert "Traceback" not in proc.stderr


def test_compute_options_win_over_the_computes_file(tmp_path: Path) -> None:
    env = _no_file_env(tmp_path)
    file = tmp_path / "computes.yml"
    file.write_text(f"computes:\n  cpu-cluster: {_unreachable()}\n")
    env["PARAJOB_COMPUTES"] = str(file)
    given = _unreachable().replace("127.0.0.1", "localhost")
    proc = _run_env(tmp_path, env, "--compute", f"cpu-cluster={given}")
    assert proc.returncode == 2, proc.stderr
    assert f"cannot reach the Dask scheduler at {given}" in proc.stderr
    assert f"--compute cpu-cluster={given}" in proc.stderr
    code = textwrap.dedent(f"""
        import parajob
        try:
            parajob.run({str(tmp_path / "pipeline.yml")!r}, run_dir={str(tmp_path / "api")!r},
                        compute={{"cpu-cluster": {given!r}}})
        except parajob.SpecError as exc:
            print(exc)
    """)
    api = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert f"cannot reach the Dask scheduler at {given}" in api.stdout, api.stderr


def test_a_serial_run_and_an_unmapped_step_ignore_the_computes_file(tmp_path: Path) -> None:
    env = _no_file_env(tmp_path)
    file = tmp_path / "computes.yml"
    file.write_text(f"computes:\n  cpu-cluster: {_unreachable()}\n  gpu: tcp://10.0.0.9:1\n")
    env["PARAJOB_COMPUTES"] = str(file)
    serial = _run_env(tmp_path, env, "--serial")
    assert serial.returncode == 0, serial.stderr
    (tmp_path / "pipeline.yml").write_text(
        (tmp_path / "pipeline.yml").read_text().replace("compute: cpu-cluster", "compute: cpu")
    )
    other = subprocess.run(
        [
            sys.executable,
            "-m",
            "parajob",
            "run",
            "pipeline.yml",
            "--run-dir",
            str(tmp_path / "run2"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.returncode == 0, other.stderr
    assert "simulated on this machine" in other.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "computes:\n  cpu-cluster: http://h:1\n",
            ":2:16: error: computes.cpu-cluster: compute 'cpu-cluster': 'http://h:1' is not a Dask "
            "scheduler address",
        ),
        (
            "computes:\n  cpu-cluster: 8786\n",
            ":2:16: error: computes.cpu-cluster: expected a string, found integer 8786",
        ),
        ("computes: [tcp://h:1]\n", ":1:11: error: computes: expected a mapping, found a list"),
        (
            "computes:\n  cpu-cluster: tcp://h:1\nclusters: {}\n",
            ":3:1: error: clusters: unknown key 'clusters'",
        ),
        ("cpu-cluster: tcp://h:1\n", "error: cpu-cluster: unknown key 'cpu-cluster'"),
        ("computes:\n  a: 'tcp://h:1\n", "error: invalid YAML"),
    ],
)
def test_a_bad_computes_file_is_bad_input(tmp_path: Path, text: str, message: str) -> None:
    env = _no_file_env(tmp_path)
    file = tmp_path / "computes.yml"
    file.write_text(text)
    env["PARAJOB_COMPUTES"] = str(file)
    proc = _run_env(tmp_path, env)
    assert proc.returncode == 2, proc.stderr
    if message.startswith(":"):  # located: FILE:LINE:COLUMN
        assert f"{file}{message}" in proc.stderr, proc.stderr
    else:
        assert f"{file}:" in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_missing_parajob_computes_file_is_bad_input(tmp_path: Path) -> None:
    env = _no_file_env(tmp_path)
    env["PARAJOB_COMPUTES"] = str(tmp_path / "nope.yml")
    proc = _run_env(tmp_path, env)
    assert proc.returncode == 2, proc.stderr
    assert (
        f"{tmp_path / 'nope.yml'}: error: cannot read the computes file "
        "($PARAJOB_COMPUTES): No such file or directory"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_computes_file_runs_the_step_on_its_cluster(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from dask_cluster import DaskCluster

    cluster = DaskCluster.start(tmp_path / "dask", 2)
    try:
        env = _no_file_env(tmp_path)
        file = tmp_path / "home" / ".config" / "parajob" / "computes.yml"
        file.parent.mkdir(parents=True)
        file.write_text(f"computes:\n  cpu-cluster: {cluster.address}\n")
        proc = _run_env(tmp_path, env)
    finally:
        cluster.stop()
    assert proc.returncode == 0, proc.stderr
    assert "simulated" not in proc.stderr
    rows = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert rows == [f"f{i:05d}.txt" for i in range(20)]
    environment = (tmp_path / "run" / "step" / "logs" / "environment.txt").read_text()
    assert (
        f"cpu-cluster -> the Dask cluster at {cluster.address} (computes file {file})"
        in environment
    )
    nodes = (tmp_path / "run" / "step" / "logs" / "sys" / "nodes.txt").read_text()
    assert "channel=tcp+token" in nodes  # a tcp:// cluster: no TLS on parajob's channel


def test_an_empty_parajob_computes_reads_no_file(tmp_path: Path) -> None:
    env = _no_file_env(tmp_path)
    file = tmp_path / "home" / ".config" / "parajob" / "computes.yml"
    file.parent.mkdir(parents=True)
    file.write_text(f"computes:\n  cpu-cluster: {_unreachable()}\n")
    env["PARAJOB_COMPUTES"] = ""  # not even the default file
    proc = _run_env(tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert "simulated on this machine" in proc.stderr
