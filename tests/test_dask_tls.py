"""A step on a TLS Dask cluster (tests/dask_cluster.py with a throwaway CA): Dask's own
traffic and parajob's driver <-> node channel both use the cluster's certificates, both
ends verifying; the output is the local run's. The driver takes its Security from Dask's
configuration (here DASK_DISTRIBUTED__COMM__TLS__* variables, the standard way)."""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, RUN_TIMEOUT_S, run_cli, write_job

pytest.importorskip("distributed")

from dask_cluster import DaskCluster, TlsFiles, make_tls_files  # noqa: E402

from parajob.executors.dask_wire import FrameReader, send_frame  # noqa: E402

COMPUTE = "compute: cpu-cluster\n"


def _no_tls_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DASK_DISTRIBUTED__COMM__")}


def test_a_tls_cluster_run_gives_the_local_output(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    pipeline = write_job(
        tmp_path,
        ECHO_SCRIPT,
        files=40,
        mini_batch_size=3,
        concurrency=2,
        instances=2,
        extra_step=COMPUTE,
    )
    local = run_cli("run", str(pipeline), "--run-dir", str(tmp_path / "local"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    cluster = DaskCluster.start(tmp_path / "dask", 2, tls=tls)
    try:
        assert cluster.address.startswith("tls://")
        remote = run_cli(
            "run",
            str(pipeline),
            "--run-dir",
            str(tmp_path / "remote"),
            "--compute",
            f"cpu-cluster={cluster.address}",
            cwd=tmp_path,
            env={**_no_tls_env(), **cluster.tls_env},
        )
    finally:
        cluster.stop()
    assert remote.returncode == 0, remote.stderr
    out = "step/outputs/out"
    assert (tmp_path / "remote" / out).read_bytes() == (tmp_path / "local" / out).read_bytes()
    nodes = (tmp_path / "remote" / "step" / "logs" / "sys" / "nodes.txt").read_text()
    assert nodes.count("dask_worker=tls://127.0.0.1:") == 2
    assert "channel=tls" in nodes


def test_parajob_run_takes_its_tls_security_from_dask_config_set(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=12, instances=2, extra_step=COMPUTE)
    cluster = DaskCluster.start(tmp_path / "dask", 2, tls=tls)
    try:
        code = textwrap.dedent(f"""
            import dask, parajob
            with dask.config.set({{"distributed.comm.tls.ca-file": {str(tls.ca)!r},
                                  "distributed.comm.tls.client.cert": {str(tls.cert)!r},
                                  "distributed.comm.tls.client.key": {str(tls.key)!r}}}):
                r = parajob.run({str(pipeline)!r}, run_dir={str(tmp_path / "run")!r},
                                compute={{"cpu-cluster": {cluster.address!r}}})
            print(r.status)
        """)
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_no_tls_env(),
            timeout=RUN_TIMEOUT_S,
        )
    finally:
        cluster.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "succeeded"
    rows = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert rows == [f"f{i:05d}.txt" for i in range(12)]
    assert "channel=tls" in (tmp_path / "run" / "step" / "logs" / "sys" / "nodes.txt").read_text()


def test_a_tls_address_without_dask_tls_configuration_is_bad_input(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, instances=2, extra_step=COMPUTE)
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        "--compute",
        "cpu-cluster=tls://127.0.0.1:1",
        cwd=tmp_path,
        env={**_no_tls_env(), "DASK_CONFIG": str(tmp_path / "no-dask-config")},
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "tls://127.0.0.1:1 is a TLS scheduler, but Dask's configuration has no "
        "distributed.comm.tls.ca-file and no distributed.comm.tls.client.cert" in proc.stderr
    )
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "step" / "outputs").exists()


def _channel(tls: TlsFiles, node_cert: bool) -> tuple[FrameReader, list[dict[str, object]]]:
    """The driver's end of one channel (dask.tls_security's context, a non-blocking
    FrameReader doing the handshake) and a node connecting with the worker role's
    context from a Security, or with the CA alone (no certificate of its own)."""
    import dask
    from distributed import Security

    from parajob.executors.dask import tls_security

    # In a process, dask.config.set is what the environment variables are to a new one.
    with dask.config.set(
        {
            "distributed.comm.tls.ca-file": str(tls.ca),
            "distributed.comm.tls.client.cert": str(tls.cert),
            "distributed.comm.tls.client.key": str(tls.key),
        }
    ):
        _security, server = tls_security("tls://127.0.0.1:1", "test")
    assert server is not None
    node_security = Security(
        tls_ca_file=str(tls.ca), tls_worker_cert=str(tls.cert), tls_worker_key=str(tls.key)
    )
    if node_cert:
        client = node_security.get_connection_args("worker")["ssl_context"]
    else:
        client = ssl.create_default_context(cafile=str(tls.ca))
        client.check_hostname = False
    listener = socket.create_server(("127.0.0.1", 0))

    def node() -> None:
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=10) as raw,
                client.wrap_socket(raw) as sock,
            ):
                send_frame(sock, "hello", token="t", node=0)
                sock.recv(1)  # until the driver's end closes
        except OSError:  # the stranger's: refused by the driver's end (ssl.SSLError)
            pass

    thread = threading.Thread(target=node)
    thread.start()
    conn, _ = listener.accept()
    conn.setblocking(False)
    reader = FrameReader(
        server.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), handshake=True
    )
    frames: list[dict[str, object]] = []
    with selectors.DefaultSelector() as selector:
        selector.register(reader.sock, selectors.EVENT_READ)
        for _ in range(200):  # a bounded number of wake-ups, never a sleep
            selector.select(5)
            frames += reader.read()
            if frames or reader.closed:
                break
    reader.sock.close()
    listener.close()
    thread.join(10)
    return reader, frames


def test_the_channel_verifies_both_ends(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    good, frames = _channel(tls, node_cert=True)
    assert not good.closed, good.why
    assert frames == [{"token": "t", "node": 0, "t": "hello"}]
    stranger, frames = _channel(tls, node_cert=False)  # trusts the CA, shows no certificate
    assert stranger.closed
    assert "the TLS handshake failed" in stranger.why
    assert frames == []
