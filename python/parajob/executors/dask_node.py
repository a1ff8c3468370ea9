"""A node of a Dask cluster run: the Dask task (node_agent) and the node process it starts.

    Dask worker thread: node_agent(args)
        | Popen(python -m parajob.executors.dask_node) -- args pickled on its stdin;
        | PR_SET_PDEATHSIG: the node process dies with the Dask worker
        v
    node process (fresh, single-threaded: safe to fork)          driver (executors/dask.py)
        connect (TLS with the Dask worker's Security on a tls:// cluster)
                -> hello(token, node, host) ------------------------------->
        check the run folder (the driver's token file)  -> bad_folder(host, why) | ready
        its own DispatchRegion (n_batches, W slots) + LocalExecutor
        loop:  <- spawn(rank, process) / batches / kill / terminate / close
               -> want(n) when its queue runs low (dispatch on demand)
               -> ended(rows) once per drain of its done ring (with its wall-clock times)
               -> died(process, status, state, held) after a local reap
               -> expired(process, batch, attempt, kind) from its watchdog
               -> states(rows) every STATES_S (heartbeat + what each process runs, its pid)

The node decides nothing: the driver's engine does (retries, limits, replacements). The
node's region uses the driver's batch ids and process ids, so its workers' spools and logs
in the shared run folder are the run's own. Attempt numbers: a local region queues a
batch first as attempt 0 (from PENDING, only 0 is accepted), so the node keeps, per batch,
the driver's attempt number at its first sighting (``base``): local = driver - base, and
every frame carries the driver's number.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from parajob import _core
from parajob.executors.base import Event, SpawnError, WorkerDied
from parajob.executors.dask_wire import FrameReader, send_frame
from parajob.executors.local import LocalExecutor, WorkerProcess
from parajob.runtime import fd_guard
from parajob.runtime.accounting import Limits
from parajob.runtime.job import NodeRecipe
from parajob.runtime.layout import StepLayout

STATES_S = 0.5
PREFETCH_S = 0.1  # attempts queued on a node: about this much of its recent work
RATE_WINDOW_S = 0.25  # ... measured over this window
MAX_PREFETCH = 4096
TICK_S = 0.25
BUSY_NAP_S = 0.005
TOKEN_FILE = "dask-token"  # in the step's work folder: written by the driver, read by nodes
EXIT_BAD_FOLDER = 3
EXIT_NO_TLS = 4
BatchState = _core.BatchState
RUNNING, FINISHING = int(BatchState.RUNNING), int(BatchState.FINISHING)


@dataclass(frozen=True)
class NodeArgs:
    """What the driver sends each node agent (pickled by Dask, then on to the node)."""

    driver_host: str
    driver_port: int
    token: str
    node: int
    workers_per_node: int
    recipe: NodeRecipe
    limits: Limits
    tls: bool = False  # the driver's channel is TLS (a tls:// cluster)
    # The Dask worker's distributed.Security, filled in by node_agent on the node (never
    # sent by the driver: no key material travels), handed to the node process on its stdin.
    security: Any = None


EXIT_CODES = {
    EXIT_BAD_FOLDER: "it cannot use the run folder",
    EXIT_NO_TLS: "its TLS connection to the driver failed (see the Dask worker's log)",
}


def node_agent(args: NodeArgs) -> str:
    """The Dask task: run the node process to its end; how it ended."""
    import ctypes

    if args.tls:
        from distributed import get_worker

        args = replace(args, security=get_worker().security)

    def die_with_agent() -> None:  # in the child, before exec: only async-signal-safe work
        ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL

    proc = subprocess.Popen(
        [sys.executable, "-m", "parajob.executors.dask_node"],
        stdin=subprocess.PIPE,
        preexec_fn=die_with_agent,
    )  # noqa: PLW1509
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(args))
    proc.stdin.close()
    code = proc.wait()
    why = EXIT_CODES.get(code)
    return f"exit code {code}" + (f": {why}" if why else "")


class NodeLoop:
    """One node's life: forward what happens to the driver, do what it says."""

    def __init__(
        self,
        args: NodeArgs,
        sock: socket.socket,
        region: _core.DispatchRegion,
        executor: LocalExecutor,
    ) -> None:
        self.args, self.sock, self.region, self.executor = args, sock, region, executor
        self.reader = FrameReader(sock)
        self.workers: dict[int, WorkerProcess] = {}  # process -> live local worker
        self.asked = False
        self.closing = False
        self.reported: set[tuple[int, int, int, str]] = set()
        self.last_states = 0.0
        # The local queue's marks: at least 2W+4 attempts, and ~PREFETCH_S of this node's
        # recent throughput (one want per few attempts capped short mini-batches at one
        # round trip each few attempts); a slow node keeps few, so it takes fewer.
        self.floor = 2 * args.workers_per_node + 4
        self.low, self.high = args.workers_per_node, self.floor
        self.ended_since, self.rate_since = 0, time.monotonic()
        self.base = np.full(args.recipe.n_batches, -1, dtype=np.int64)  # see the docstring
        self.states: list[list[int]] = []  # last sent: [process, state, batch] per worker

    def send(self, frame_type: str, /, **fields: object) -> None:
        self.sock.setblocking(True)
        try:
            send_frame(self.sock, frame_type, **fields)
        finally:
            self.sock.setblocking(False)

    def run(self) -> int:
        self.executor.start()
        busy = False
        try:
            while True:
                self._commands()
                if self.reader.closed:  # the driver is gone: stop everything here
                    for worker in self.workers.values():
                        self.executor.kill(worker, "the driver went away")
                    self._wait_all()
                    return 0
                busy = self._send_ended() > 0
                self._watchdog()
                self._report_states()
                self._ask()
                if self.closing and not self.workers:
                    return 0
                for event in self._wait(busy):
                    if isinstance(event, WorkerDied):
                        self._on_died(event)
        finally:
            self.executor.stop()

    def _wait(self, busy: bool) -> list[Event]:
        if busy:
            return self.executor.wait(BUSY_NAP_S)
        self.region.arm_driver_sleep()
        if self._send_ended():
            self.region.disarm_driver_sleep()
            return self.executor.wait(0)
        try:
            return self.executor.wait(TICK_S)
        finally:
            self.region.disarm_driver_sleep()

    def _commands(self) -> None:
        for frame in self.reader.read():
            kind = frame.get("t")
            if kind == "spawn":
                process, rank = int(frame["process"]), int(frame["rank"])
                try:
                    self.workers[process] = self.executor.spawn(
                        rank, self.args.node, rank, process=process
                    )
                except SpawnError as exc:
                    self.send(
                        "died",
                        process=process,
                        code=70,
                        signal=None,
                        peak_rss=0,
                        state=int(_core.WorkerState.STARTING),
                        held=[],
                        why=str(exc),
                    )
            elif kind == "batches":
                self.asked = False
                for batch, attempt in frame.get("pairs", []):
                    self._enqueue(int(batch), int(attempt))
            elif kind in ("kill", "terminate"):
                worker = self.workers.get(int(frame["process"]))
                if worker is not None:
                    if kind == "kill":
                        self.executor.kill(worker, "the driver said so")
                    else:
                        self.executor.terminate(worker)
            elif kind == "close":
                self.closing = True
                self.region.close()

    def _enqueue(self, batch: int, attempt: int) -> None:
        """Queue the driver's attempt here; a local state left by an earlier attempt that
        the driver decided otherwise (a record it rejected) is cleared first."""
        region = self.region
        if self.base[batch] < 0:
            self.base[batch] = attempt
        local = attempt - int(self.base[batch])
        if region.enqueue(batch, local):
            return
        state, old, process = region.batch_state(batch)
        if state == int(BatchState.DONE):
            region.reject_done(batch, old, process)
        elif state in (RUNNING, FINISHING):
            region.take_back(batch, old, process, BatchState.CRASHED)
        if not region.enqueue(batch, local):
            print(
                f"parajob node {self.args.node}: mini-batch {batch} attempt {attempt + 1} "
                f"refused by the local queue (state {region.batch_state(batch)})",
                file=sys.stderr,
            )

    def _send_ended(self) -> int:
        ended = self.region.drain_ended()
        if not len(ended):
            return 0
        rows = []
        # This node's monotonic stamps as wall-clock ns: the driver's clock is another
        # machine's (processed_mini-batches.csv's times are the nodes' own).
        wall = time.time_ns() - _core.monotonic_ns()
        for batch in ended.tolist():
            state, attempt, process, items_in, items_out, offset, length, code, start, end = (
                self.region.batch_result(batch)
            )
            rows.append(
                [
                    batch,
                    attempt + int(self.base[batch]),
                    process,
                    int(state == int(BatchState.DONE)),
                    items_in,
                    items_out,
                    offset,
                    length,
                    code,
                    start + wall,
                    end + wall,
                ]
            )
        self.send("ended", rows=rows)
        self.ended_since += len(rows)
        return len(rows)

    def _adapt(self, now: float) -> None:
        """Resize the queue's marks from the throughput since the last resize."""
        if now - self.rate_since < RATE_WINDOW_S:
            return
        rate = self.ended_since / (now - self.rate_since)
        self.ended_since, self.rate_since = 0, now
        self.high = min(MAX_PREFETCH, max(self.floor, int(rate * PREFETCH_S)))
        self.low = max(self.args.workers_per_node, self.high // 2)

    def _on_died(self, event: WorkerDied) -> None:
        worker = event.worker
        assert isinstance(worker, WorkerProcess)
        self._send_ended()  # what it ended goes first: the driver decides those there
        self.workers.pop(worker.process, None)
        region = self.region
        in_run = region.worker_info(worker.slot)[3]
        held = []
        unclaimed = region.reclaim_unclaimed(worker.slot, worker.process)
        if unclaimed >= 0:
            held.append(
                [unclaimed, region.batch_state(unclaimed)[1] + int(self.base[unclaimed]), 0]
            )
        for batch in range(region.n_batches):  # first cut: a scan; the slots view later
            state, attempt, process = region.batch_state(batch)
            if process == worker.process and state in (RUNNING, FINISHING):
                region.take_back(batch, attempt, process, BatchState.CRASHED)
                held.append([batch, attempt + int(self.base[batch]), int(batch == in_run)])
        status = event.status
        self.send(
            "died",
            process=worker.process,
            code=status.code,
            signal=status.signal,
            peak_rss=status.peak_rss_bytes,
            state=event.state,
            held=held,
        )

    def _watchdog(self) -> None:
        for late in self.executor.expired(self.args.limits):
            key = (late.worker.process, late.batch, late.attempt, late.kind)
            if key in self.reported:
                continue
            self.reported.add(key)
            attempt = late.attempt + int(self.base[late.batch]) if late.batch >= 0 else -1
            self.send(
                "expired",
                process=late.worker.process,
                batch=late.batch,
                attempt=attempt,
                kind=late.kind,
                elapsed_s=late.elapsed_s,
            )

    def _report_states(self) -> None:
        """What each process does, when it changed (the driver charges a lost node's
        attempts by it: it must be fresh) and every STATES_S (the heartbeat)."""
        rows = []
        for process, worker in self.workers.items():
            pid, _p, state, batch, *_ = self.region.worker_info(worker.slot)
            rows.append([process, state, batch, pid])
        now = time.monotonic()
        if rows == self.states and now - self.last_states < STATES_S:
            return
        self.last_states, self.states = now, rows
        self.send("states", rows=rows)

    def _ask(self) -> None:
        self._adapt(time.monotonic())
        if self.closing or self.asked:
            return
        depth = self.region.queued_approx()
        if depth < self.low:
            self.asked = True
            self.send("want", n=self.high - depth)

    def _wait_all(self) -> None:
        deadline = time.monotonic() + 10
        while self.workers and time.monotonic() < deadline:
            for event in self.executor.wait(TICK_S):
                if isinstance(event, WorkerDied):
                    self.workers.pop(event.worker.process, None)


def _check_folder(args: NodeArgs) -> str | None:
    """Why this node cannot use the run folder the driver uses; None when it can."""
    layout = StepLayout(args.recipe.run_dir / args.recipe.step.name)
    token_file = layout.work_dir / TOKEN_FILE
    try:
        seen = token_file.read_text(encoding="ascii").strip()
    except OSError as exc:
        return f"cannot read {token_file}: {exc.strerror or exc}"
    if seen != args.token:
        return f"{token_file} is another run's: this is not the driver's run folder"
    if not os.access(layout.spool_dir, os.W_OK):
        return f"cannot write to {layout.spool_dir}"
    return None


def main() -> int:
    args: NodeArgs = pickle.loads(sys.stdin.buffer.read())
    sock = socket.create_connection((args.driver_host, args.driver_port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.tls:
        try:
            sock = _tls_wrap(args, sock)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            print(
                f"parajob node {args.node}: the TLS connection to the driver at "
                f"{args.driver_host}:{args.driver_port} failed: {exc}",
                file=sys.stderr,
            )
            sock.close()
            return EXIT_NO_TLS
    host = socket.gethostname()
    send_frame(sock, "hello", token=args.token, node=args.node, host=host, pid=os.getpid())
    why = _check_folder(args)
    region = None
    if why is None:
        from parajob.runtime.job import node_setup

        notify_fd = fd_guard.move_high(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
        region = _core.DispatchRegion(args.recipe.n_batches, args.workers_per_node, notify_fd)
        try:
            setup = node_setup(args.recipe, region, args.workers_per_node)
        except Exception as exc:  # noqa: BLE001 - a SpecError of planning, a ValueError
            why = str(exc)
    if why is not None:
        send_frame(sock, "bad_folder", host=host, why=why)
        sock.close()
        return EXIT_BAD_FOLDER
    send_frame(sock, "ready")
    sock.setblocking(False)
    executor = LocalExecutor(setup, notify_fd)
    executor.wake_on(sock)  # the loop reads the driver's frames after every wait
    try:
        return NodeLoop(args, sock, region, executor).run()  # type: ignore[arg-type]
    finally:
        executor.close()
        sock.close()


def _tls_wrap(args: NodeArgs, sock: socket.socket) -> socket.socket:
    """The node's end of a TLS channel: the Dask worker's own certificate (worker role),
    the driver's verified against the cluster's CA, as Dask's comms do (no host name
    check: Dask clusters are addressed by IP)."""
    if args.security is None:
        raise ValueError("the Dask worker has no TLS configuration")
    context = args.security.get_connection_args("worker")["ssl_context"]
    if context is None:
        raise ValueError("the Dask worker's TLS configuration has no CA file or certificate")
    wrapped: socket.socket = context.wrap_socket(sock)
    return wrapped


def write_token(layout: StepLayout, token: str) -> Path:
    """The driver's half of the shared-folder check (read back by _check_folder)."""
    path = layout.work_dir / TOKEN_FILE
    path.write_text(token + "\n", encoding="ascii")
    return path


if __name__ == "__main__":
    sys.exit(main())
