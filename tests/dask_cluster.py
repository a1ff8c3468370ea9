"""A real Dask cluster on loopback for tests: one `dask scheduler` and N `dask worker`
processes, with random ports, torn down with nothing left running.

    DaskCluster.start(tmp, n_workers)
        dask scheduler --host 127.0.0.1 --port 0 --scheduler-file tmp/scheduler.json
        dask worker --scheduler-file ... --nthreads 1 --nworkers 1 --no-nanny  (x N)
        -> waits until the scheduler lists N workers (Client.wait_for_workers)
    .address            tcp://127.0.0.1:<port>
    .worker_pids()      {worker address: pid}, to SIGKILL one mid-run
    .stop()             SIGTERM each process group, SIGKILL after a grace, reap all

Each process runs in its own session (start_new_session), so stop() takes whatever a
worker started (node processes, their workers) with it. `--no-nanny`: a SIGKILLed worker
stays dead (a nanny would start a new one with a new address), which is what a lost
node is. Workers get this checkout's python/ on PYTHONPATH, so node agents import the
parajob under test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"


class DaskCluster:
    """A started scheduler and its workers (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.address = ""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ,
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (str(PYTHON_DIR), os.environ.get("PYTHONPATH")) if p)}

    @classmethod
    def start(cls, folder: Path, n_workers: int) -> DaskCluster:
        folder.mkdir(parents=True, exist_ok=True)
        cluster = cls(folder)
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
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                    cwd=self.folder, start_new_session=True)
        self.procs.append(proc)
        return proc

    def _start_scheduler(self) -> None:
        self._popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                     "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(self.scheduler_file)], "scheduler.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                pytest.fail(f"dask scheduler exited: {self.log('scheduler.log')}")
            try:
                self.address = json.loads(self.scheduler_file.read_text())["address"]
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        pytest.fail(f"dask scheduler did not start in {START_TIMEOUT_S:g}s: "
                    f"{self.log('scheduler.log')}")

    def add_worker(self, i: int, hide: Path | None = None) -> subprocess.Popen[bytes]:
        """Start worker i; with ``hide``, in its own mount namespace where an empty tmpfs
        covers that folder (a node that does not see the run folder; needs root)."""
        wrap = [] if hide is None else [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs parajob-hidden "$0" && exec "$@"', str(hide)]
        worker = self._popen([*wrap, sys.executable, "-m", "distributed.cli.dask_worker",
                              "--scheduler-file", str(self.scheduler_file),
                              "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                              "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                              "--local-directory", str(self.folder / f"w{i}")],
                             f"worker{i}.log")
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT_S)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid, as the scheduler knows them."""
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT_S) as client:
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
