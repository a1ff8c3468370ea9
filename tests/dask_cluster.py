"""A real Dask cluster on loopback for tests: one `dask scheduler` and N `dask worker`
processes, with random ports, torn down with nothing left running.

    DaskCluster.start(tmp, n_workers)       (the README's commands, on loopback)
        dask scheduler --host 127.0.0.1 --port 0 --scheduler-file tmp/scheduler.json
        dask worker tcp://127.0.0.1:PORT --nthreads 1 --nworkers 1 --no-nanny  (x N)
        -> waits until the scheduler lists N workers (Client.wait_for_workers)
    .address            tcp://127.0.0.1:<port>
    .worker_pids()      {worker address: pid}, to SIGKILL one mid-run
    .stop()             SIGTERM each process group, SIGKILL after a grace, reap all

With ``tls=make_tls_files(folder)`` (a throwaway CA and one certificate it signed, made
with the ``cryptography`` package or the ``openssl`` CLI; the test is skipped, saying
why, when neither exists), every process runs with --protocol tls --tls-ca-file
--tls-cert --tls-key, the address is tls://..., and ``.tls_env`` holds the
DASK_DISTRIBUTED__COMM__TLS__* variables a Dask client (the driver) needs.

Each process runs in its own session (start_new_session), so stop() takes whatever a
worker started (node processes, their workers) with it. `--no-nanny`: a SIGKILLed worker
stays dead (a nanny would start a new one with a new address), which is what a lost
node is. Each process also gets SIGKILL when the test process dies (PR_SET_PDEATHSIG), so a
pytest killed by a timeout or a signal, which runs no teardown, leaves no cluster behind.
Workers get the folder of the parajob these tests imported on PYTHONPATH (this
checkout's python/ in a dev tree, site-packages when installed: a clean clone's python/
has no compiled core), so node agents import the parajob under test.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import parajob

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
PYTHON_DIR = Path(parajob.__file__).resolve().parent.parent


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a certificate (with its key) it signed, for every role."""

    ca: Path
    cert: Path
    key: Path

    def args(self) -> list[str]:
        return [
            "--protocol",
            "tls",
            "--tls-ca-file",
            str(self.ca),
            "--tls-cert",
            str(self.cert),
            "--tls-key",
            str(self.key),
        ]

    def client_env(self) -> dict[str, str]:
        """What a Dask client (parajob's driver) reads its Security from."""
        prefix = "DASK_DISTRIBUTED__COMM__TLS__"
        return {
            f"{prefix}CA_FILE": str(self.ca),
            f"{prefix}CLIENT__CERT": str(self.cert),
            f"{prefix}CLIENT__KEY": str(self.key),
        }

    def security(self) -> Any:
        from distributed import Security

        return Security(
            tls_ca_file=str(self.ca),
            tls_client_cert=str(self.cert),
            tls_client_key=str(self.key),
            require_encryption=True,
        )


def make_tls_files(folder: Path) -> TlsFiles:
    """A CA and a certificate for 127.0.0.1 signed by it, in folder; pytest.skip (with the
    reason) when neither the cryptography package nor the openssl CLI is there."""
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    try:
        _tls_with_cryptography(files)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("a TLS cluster needs the cryptography package or the openssl CLI")
        _tls_with_openssl(files, folder)
    return files


def _tls_with_cryptography(files: TlsFiles) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("parajob test CA"))
        .issuer_name(name("parajob test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _tls_with_openssl(files: TlsFiles, folder: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key = folder / "ca-key.pem"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(files.ca),
        "-days",
        "1",
        "-subj",
        "/CN=parajob test CA",
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(files.key),
        "-out",
        str(folder / "cert.csr"),
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(folder / "cert.csr"),
        "-CA",
        str(files.ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(files.cert),
        "-days",
        "1",
        "-extfile",
        str(folder / "ext.cnf"),
    )


class DaskCluster:
    """A started scheduler and its workers (see the module docstring)."""

    def __init__(
        self, folder: Path, tls: TlsFiles | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.folder = folder
        self.tls = tls
        self.tls_env = tls.client_env() if tls is not None else {}
        self.scheduler_file = folder / "scheduler.json"
        self.address = ""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(PYTHON_DIR), os.environ.get("PYTHONPATH")) if p
            ),
            **(env or {}),
        }

    @classmethod
    def start(
        cls,
        folder: Path,
        n_workers: int,
        tls: TlsFiles | None = None,
        env: dict[str, str] | None = None,
    ) -> DaskCluster:
        """``env``: extra environment variables of every process (a node's GPUs)."""
        folder.mkdir(parents=True, exist_ok=True)
        cluster = cls(folder, tls, env)
        try:
            cluster._start_scheduler()
            for i in range(n_workers):
                cluster.add_worker(i)
            cluster.wait_for_workers(n_workers)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _popen(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.folder / log, "wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.folder,
                start_new_session=True,
                preexec_fn=_die_with_the_tests,
            )
        self.procs.append(proc)
        return proc

    def _start_scheduler(self) -> None:
        self._popen(
            [
                sys.executable,
                "-m",
                "dask",
                "scheduler",  # = `dask scheduler`
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
                *self._tls_args(),
            ],
            "scheduler.log",
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                pytest.fail(f"dask scheduler exited: {self.log('scheduler.log')}")
            try:
                self.address = json.loads(self.scheduler_file.read_text())["address"]
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        pytest.fail(
            f"dask scheduler did not start in {START_TIMEOUT_S:g}s: {self.log('scheduler.log')}"
        )

    def add_worker(self, i: int, hide: Path | None = None) -> subprocess.Popen[bytes]:
        """Start worker i; with ``hide``, in its own mount namespace where an empty tmpfs
        covers that folder (a node that does not see the run folder; needs root)."""
        wrap = (
            []
            if hide is None
            else [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount -t tmpfs parajob-hidden "$0" && exec "$@"',
                str(hide),
            ]
        )
        # The README's command (`dask worker ADDRESS --nthreads 1 --nworkers 1`), plus what
        # a test needs: loopback, no nanny, a name and a folder of its own.
        worker = self._popen(
            [
                *wrap,
                sys.executable,
                "-m",
                "dask",
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                f"w{i}",
                "--local-directory",
                str(self.folder / f"w{i}"),
                *self._tls_args(),
            ],
            f"worker{i}.log",
        )
        self.workers.append(worker)
        return worker

    def start_run(
        self,
        pipeline: Path,
        run_dir: Path,
        cwd: Path,
        *,
        stdout: int = subprocess.PIPE,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """`parajob run PIPELINE --run-dir RUN_DIR --compute cpu-cluster=ADDRESS` in the
        background, for tests that act on the run while it goes (kill a node, Ctrl-C)."""
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parajob",
                "run",
                str(pipeline),
                "--run-dir",
                str(run_dir),
                "--compute",
                f"cpu-cluster={self.address}",
            ],
            cwd=cwd,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def _tls_args(self) -> list[str]:
        return self.tls.args() if self.tls is not None else []

    def client(self) -> Any:
        from distributed import Client

        security = self.tls.security() if self.tls is not None else None
        return Client(self.address, timeout=START_TIMEOUT_S, security=security)

    def wait_for_workers(self, n: int) -> None:
        with self.client() as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT_S)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid, as the scheduler knows them."""
        with self.client() as client:
            info = client.scheduler_info()["workers"]
            pids = client.run(os.getpid)
        return {addr: pids[addr] for addr in info}

    def log(self, name: str) -> str:
        try:
            return (self.folder / name).read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after STOP_GRACE_S, reap."""
        for proc in reversed(self.procs):  # workers first, the scheduler last
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:  # the group too: what a worker started must not outlive it
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.procs = []


def _die_with_the_tests() -> None:
    """In the child, before exec: SIGKILL when the process that started it dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(name="dask_cluster")
def dask_cluster_fixture(tmp_path: Path) -> Iterator[DaskCluster]:
    """Scheduler + 2 workers on loopback, for one test (a test may kill a worker)."""
    pytest.importorskip("distributed")
    cluster = DaskCluster.start(tmp_path / "dask", 2)
    try:
        yield cluster
    finally:
        cluster.stop()
