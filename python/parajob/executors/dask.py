"""The Dask executor: a step's instance_count nodes on Dask workers, each node running the
local executor (fork, shared memory, C++ dispatch, watchdog); the driver's engine decides.

    driver                                              Dask worker i (chosen by address)
      Engine ---- spawn/kill/terminate/wait ----> DaskExecutor
        |                                          |  listen socket (random port) + one
      DispatchRegion (driver's own)                |  connection per node (dask_wire)
        slots 0..N*W-1    remote processes         |
        slots N*W..N*W+N-1 one virtual slot/node    |  client.submit(node_agent, workers=
        |                                          |    [addr], allow_other_workers=False)
        |<- hand_over + finish (ends) ------------ |<---- ended / died / states / want ---
        |-- next_batch(vslot, vproc) (on want) --> |----- batches / spawn / kill / close -->
                                                                 node process (dask_node):
                                                                 own region + LocalExecutor

Dispatch on demand: a node asks (``want n``) when its local queue runs low; the executor,
inside the engine's wait(), claims up to n attempts from the driver's queue under the
node's virtual process (``next_batch(vslot, vproc)``) and sends them. A node's end names
the process that ran the attempt; ``hand_over`` renames the claim to it (RUNNING(k, vproc)
-> RUNNING(k, p)) and ``finish`` lands the end in the driver's done ring, where the
engine accepts it (CRC check of the record in the shared spool) or retries it, as it does
locally. Why a TCP stream rather than Dask queues, pub/sub or actors: one frame per drain
on the node (hundreds of ends), no scheduler round trip per end (a Dask Queue put/get is
a scheduler RPC, serialised for the whole cluster; pub/sub is best-effort: a lost end
would be a silent stall; an actor call is an RPC per call), and a dead node is an EOF at
once (a heartbeat catches a silent host); it also fits the engine's one thread: wait()
select()s over the eventfd, the listen socket and the nodes' sockets. Nothing read from
the network is unpickled (dask_wire: JSON frames); a connection must show the run's
token, which only the step's Dask tasks carry. On a tls:// cluster the channel is TLS too,
with the cluster's own certificates, both ends verifying (as Dask's comms do): the driver
listens with the Dask *client* role's cert from ``distributed.Security()`` (Dask config /
DASK_DISTRIBUTED__COMM__TLS__* variables), the node connects with its Dask worker's
Security (*worker* role), so the channel exposes nothing the scheduler does not.
See the README's "On a Dask cluster".

A node's death (EOF, no frame for HEARTBEAT_TIMEOUT_S, its task ended): the attempt each
of its processes was in (by its last report) is handed to that process and charged as a
worker death is; each process is reported dead (WorkerDied, SIGKILL); then the node's
virtual worker is reported dead (code 0, EXITED: a normal exit to the engine), which
takes back every other attempt claimed for the node, free; the other nodes pull them.
Spawns for a lost node are refused (SpawnError): the engine goes on with the nodes left.

Invariants: every RemoteWorker returned by spawn is reported dead exactly once; every
attempt claimed under a node's virtual process is handed to a real process before that
process is reported dead, so the engine's settling sees it.
"""

from __future__ import annotations

import os
import secrets
import selectors
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parajob import _core, terminal
from parajob.errors import Diagnostic, SpecError
from parajob.executors.base import (
    DeadlineExpired,
    Event,
    ExitStatus,
    NodeHost,
    SpawnError,
    Worker,
    WorkerDied,
)
from parajob.executors.dask_wire import FrameReader, send_frame
from parajob.runtime import shm_view
from parajob.runtime.accounting import Limits
from parajob.runtime.job import NodeRecipe
from parajob.runtime.layout import StepLayout, node_name

HANDSHAKE_TIMEOUT_S = 10.0  # ... and answering as one once connected (Dask does not bound it)
CONNECT_TIMEOUT_S = 5.0  # reaching the scheduler: an unreachable one fails fast (exit 2)
NODE_START_TIMEOUT_S = 120.0  # every node's hello (its process started, the folder checked)
HEARTBEAT_TIMEOUT_S = 30.0  # a node silent this long is lost (it reports every 0.5 s)
HEARTBEAT_ENV = "PARAJOB_NODE_TIMEOUT"  # seconds, instead of HEARTBEAT_TIMEOUT_S
VIRTUAL_PROCESS_BASE = 1 << 30  # process ids of the nodes' virtual claims: never a spool's
RUNNING = int(_core.BatchState.RUNNING)


def connect_cluster(
    address: str, compute: str, instance_count: int, where: str | None = None
) -> Cluster:
    """Connect to the scheduler and choose instance_count workers (distinct hosts first).
    SpecError (exit 2) when the scheduler cannot be reached within CONNECT_TIMEOUT_S or has
    fewer workers than asked. ``where``: where the mapping was written, for messages
    (runtime.computes.compute_origin); ``--compute NAME=ADDRESS`` by default."""
    where = where or f"--compute {compute}={address}"
    try:
        from distributed import Client
    except ImportError as exc:
        raise SpecError(
            [
                Diagnostic(
                    "parajob",
                    None,
                    None,
                    where,
                    "running on a Dask cluster needs the distributed package",
                    'pip install "parajob[dask]"',
                )
            ]
        ) from exc
    security, tls = tls_security(address, where)
    try:
        client = _client(Client, address, security)
    except (OSError, TimeoutError) as exc:
        raise SpecError(
            [
                Diagnostic(
                    "parajob",
                    None,
                    None,
                    where,
                    f"cannot reach the Dask scheduler at {address}: {exc}",
                    "start it (`dask scheduler`) or fix the address",
                )
            ]
        ) from exc
    except Exception as exc:  # noqa: BLE001 - something that is not a scheduler answered
        raise SpecError(
            [
                Diagnostic(
                    "parajob",
                    None,
                    None,
                    where,
                    f"{address} does not answer as a Dask scheduler ({type(exc).__name__}: {exc})",
                    NOT_A_SCHEDULER,
                )
            ]
        ) from exc
    try:
        workers = client.scheduler_info()["workers"]
    except Exception:
        client.close()
        raise
    chosen = choose_workers(workers, instance_count)
    if len(chosen) < instance_count:
        client.close()
        raise SpecError(
            [
                Diagnostic(
                    "parajob",
                    None,
                    None,
                    where,
                    f"the Dask cluster at {address} has {len(workers)} "
                    f"worker(s); the step asks for instance_count "
                    f"{instance_count} nodes",
                    "start more `dask worker`s, or lower resources.instance_count",
                )
            ]
        )
    return Cluster(client, address, compute, chosen, where, tls)


NOT_A_SCHEDULER = (
    "give the scheduler's port (`dask scheduler` listens on 8786 by default; 8787 is its dashboard)"
)


def _client(client_type: Any, address: str, security: Any) -> Any:
    """A Dask Client of ``address``, or what it raised. Dask's own timeout covers the TCP
    connect only, not the handshake after it: a port that accepts and never answers as a
    scheduler (the dashboard's, a proxy's) would hang it for ever, so it is made in a
    daemon thread that is given up after HANDSHAKE_TIMEOUT_S (a TimeoutError)."""
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = client_type(
                address, timeout=CONNECT_TIMEOUT_S, set_as_default=False, security=security
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=connect, name="parajob-dask-connect", daemon=True)
    thread.start()
    thread.join(HANDSHAKE_TIMEOUT_S)
    if thread.is_alive():
        raise TimeoutError(
            f"{address} accepted the connection but did not answer as a Dask "
            f"scheduler within {HANDSHAKE_TIMEOUT_S:g} s ({NOT_A_SCHEDULER})"
        )
    if "error" in box:
        raise box["error"]
    return box["client"]


TLS_ENV = "DASK_DISTRIBUTED__COMM__TLS__"  # + CA_FILE, CLIENT__CERT, CLIENT__KEY


def tls_security(address: str, where: str) -> tuple[Any, ssl.SSLContext | None]:
    """For a tls:// scheduler: Dask's Security from its configuration and the server
    context parajob's channel listens with (client role, both directions verified);
    (None, None) for any other scheme (Dask's defaults; the channel keeps the token
    check alone). SpecError when the configuration lacks the CA or the client certificate,
    or its files cannot be loaded."""
    if not address.startswith("tls://"):
        return None, None
    from distributed import Security

    hint = (
        f"configure Dask's TLS: distributed.comm.tls.ca-file, .client.cert and "
        f".client.key in ~/.config/dask/*.yaml, or {TLS_ENV}CA_FILE, "
        f"{TLS_ENV}CLIENT__CERT and {TLS_ENV}CLIENT__KEY"
    )
    try:
        security: Any = Security()  # type: ignore[no-untyped-call]
        missing = [
            name
            for name, value in (
                ("distributed.comm.tls.ca-file", security.tls_ca_file),
                ("distributed.comm.tls.client.cert", security.tls_client_cert),
            )
            if not value
        ]
        if missing:
            raise SpecError(
                [
                    Diagnostic(
                        "parajob",
                        None,
                        None,
                        where,
                        f"{address} is a TLS scheduler, but Dask's "
                        f"configuration has no {' and no '.join(missing)}",
                        hint,
                    )
                ]
            )
        context = security.get_listen_args("client")["ssl_context"]
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise SpecError(
            [
                Diagnostic(
                    "parajob",
                    None,
                    None,
                    where,
                    f"cannot use Dask's TLS configuration: {exc}",
                    hint,
                )
            ]
        ) from exc
    return security, context


def choose_workers(workers: dict[str, dict[str, Any]], n: int) -> list[tuple[str, str]]:
    """(worker address, host) of n workers: one per host first, round robin over hosts."""
    by_host: dict[str, list[str]] = {}
    for addr in sorted(workers):
        by_host.setdefault(str(workers[addr].get("host", addr)), []).append(addr)
    chosen: list[tuple[str, str]] = []
    while len(chosen) < n and any(by_host.values()):
        for host, addrs in by_host.items():
            if addrs and len(chosen) < n:
                chosen.append((addrs.pop(0), host))
    return chosen


class Cluster:
    """A connected Dask client and the workers chosen for one step's nodes."""

    def __init__(
        self,
        client: Any,
        address: str,
        compute: str,
        chosen: list[tuple[str, str]],
        where: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.client = client
        self.tls = tls  # the channel's server context on a tls:// cluster, else None
        self.address = address
        self.compute = compute
        self.where = where or f"--compute {compute}={address}"  # for messages
        self.chosen = chosen

    def counts(self, per_node: int, n_batches: int) -> tuple[int, int]:
        """(nodes, processes per node): never more than the mini-batches need."""
        instances = max(1, min(len(self.chosen), n_batches))
        workers = max(1, min(per_node, -(-n_batches // instances)))
        return instances, workers

    def executor(
        self,
        region: _core.DispatchRegion,
        notify_fd: int,
        recipe: NodeRecipe,
        layout: StepLayout,
        limits: Limits,
        instances: int,
        workers_per_node: int,
        first_process: int,
    ) -> DaskExecutor:
        return DaskExecutor(
            self,
            region,
            notify_fd,
            recipe,
            layout,
            limits,
            instances,
            workers_per_node,
            first_process,
        )

    def close(self) -> None:
        try:
            self.client.close(timeout=5)
        except Exception:  # noqa: BLE001 - closing a client of a dead scheduler
            pass


@dataclass(eq=False)
class RemoteWorker(Worker):
    """A worker process on a node (its slot, process id and node as the engine sees them)."""

    dead: bool = False


@dataclass(eq=False)
class _Node:
    index: int
    worker_address: str
    host: str
    vslot: int
    vproc: int
    future: Any = None
    sock: socket.socket | None = None
    reader: FrameReader | None = None
    last_heard: float = 0.0
    lost: str | None = None
    ready: bool = False  # its "ready" came: the folder check passed
    want: int = 0
    closed_sent: bool = False
    workers: dict[int, RemoteWorker] = field(default_factory=dict)  # process -> worker
    in_run: dict[int, int] = field(default_factory=dict)  # process -> batch (last report)
    pending: list[tuple[int, int]] = field(default_factory=list)  # spawns before ready


def _environment_hint(why: str) -> str | None:
    """What to do when the node's task could not even be unpickled: the scheduler (which
    unpickles task graphs since distributed 2024) or the worker lacks this parajob."""
    if "deserializ" not in why and "No module named 'parajob" not in why:
        return None
    import parajob

    return (
        "the Dask scheduler and every worker unpickle the node's task: each must import "
        f"the parajob this machine runs ({parajob.__version__}, "
        f'{os.path.dirname(parajob.__file__)}): `pip install "parajob[dask]"` in the '
        "environment of `dask scheduler` too; its log names the module it missed"
    )


class DaskExecutor:
    """The engine's executor for a cluster run. Single-threaded, like the engine."""

    def __init__(
        self,
        cluster: Cluster,
        region: _core.DispatchRegion,
        notify_fd: int,
        recipe: NodeRecipe,
        layout: StepLayout,
        limits: Limits,
        instances: int,
        workers_per_node: int,
        first_process: int,
    ) -> None:
        self._cluster = cluster
        self._region = region
        self._notify_fd = notify_fd
        self._recipe = recipe
        self._layout = layout
        self._limits = limits
        self._wpn = workers_per_node
        self._next_process = first_process
        self._token = secrets.token_hex(16)
        self._silence_s = _silence_limit()
        self._selector = selectors.DefaultSelector()
        self._selector.register(notify_fd, selectors.EVENT_READ, "wake")
        self._listener = self._listen()
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._unidentified: dict[socket.socket, FrameReader] = {}
        n_remote = instances * workers_per_node
        self._nodes = [
            _Node(i, addr, host, n_remote + i, VIRTUAL_PROCESS_BASE + i)
            for i, (addr, host) in enumerate(cluster.chosen[:instances])
        ]
        self._events: list[Event] = []
        self._slots = shm_view.batch_slots(region)
        # Per batch, the wall-clock times its last reported attempt ran on its node (the
        # driver's slot stamps are the claim for the node and the report's arrival).
        self._ran_attempt = np.full(region.n_batches, -1, dtype=np.int64)
        self._ran_ns = np.zeros((region.n_batches, 2), dtype=np.int64)
        for node in self._nodes:  # the engine reads every slot's state: virtual ones idle
            region.reset_worker(node.vslot, node.vproc)
            region.set_worker_state(node.vslot, _core.WorkerState.IDLE)

    # ---- setting up ---------------------------------------------------------------------

    def _listen(self) -> socket.socket:
        """A listening socket on the interface that reaches the scheduler."""
        host = _local_ip_towards(self._cluster.address)
        sock = socket.create_server((host, 0))
        sock.setblocking(False)
        return sock

    def start(self) -> None:
        """Submit one node agent per chosen worker, pinned to it; wait until each is ready
        (connected, its folder check passed). SpecError when one cannot start."""
        from parajob.executors.dask_node import NodeArgs, node_agent, write_token

        write_token(self._layout, self._token)  # the nodes read it back: the same folder
        host, port = self._listener.getsockname()[:2]
        for node in self._nodes:
            args = NodeArgs(
                host,
                port,
                self._token,
                node.index,
                self._wpn,
                self._recipe,
                self._limits,
                tls=self._cluster.tls is not None,
            )
            node.future = self._cluster.client.submit(
                node_agent,
                args,
                workers=[node.worker_address],
                allow_other_workers=False,
                pure=False,
                retries=0,
                key=f"parajob-node-{node.index}-{self._token}",
            )
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while not all(n.ready for n in self._nodes):
            if time.monotonic() > deadline:
                missing = ", ".join(
                    f"{n.index} ({n.worker_address})" for n in self._nodes if not n.ready
                )
                raise SpecError(
                    [
                        Diagnostic(
                            "parajob",
                            None,
                            None,
                            self._cluster.where,
                            f"node(s) {missing} did not start within {NODE_START_TIMEOUT_S:g} s",
                            "see the Dask workers' logs",
                        )
                    ]
                )
            self._poll(0.1)
            self._check_futures(starting=True)
        self._write_nodes()

    def _write_nodes(self) -> None:
        """logs/sys/nodes.txt: which host and Dask worker each node folder is."""
        lines = [
            f"{node_name(n.index)} host={n.host} dask_worker={n.worker_address}\n"
            for n in self._nodes
        ]
        path = self._layout.logs / "sys" / "nodes.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        channel = "tls" if self._cluster.tls is not None else "tcp+token"
        path.write_text(
            f"scheduler={self._cluster.address} channel={channel}\n" + "".join(lines),
            encoding="utf-8",
        )

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self._cluster.tls
        if tls is not None:  # the handshake goes on in the reader, never blocking here
            conn = tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        reader = FrameReader(conn, handshake=tls is not None)
        self._unidentified[conn] = reader
        self._selector.register(conn, selectors.EVENT_READ, reader)

    def _hello(self, reader: FrameReader, frame: dict[str, Any]) -> _Node | None:
        conn = reader.sock
        del self._unidentified[conn]
        index = frame.get("node")
        if (
            frame.get("t") != "hello"
            or frame.get("token") != self._token
            or not (isinstance(index, int) and 0 <= index < len(self._nodes))
            or self._nodes[index].sock is not None
        ):
            self._drop(conn)  # not one of ours
            return None
        node = self._nodes[index]
        node.sock, node.reader, node.last_heard = conn, reader, time.monotonic()
        node.host = str(frame.get("host", node.host))
        self._selector.modify(conn, selectors.EVENT_READ, node)
        return node

    def _on_ready(self, node: _Node, frame: dict[str, Any]) -> None:
        """Its folder check passed and its region exists: spawns may go."""
        node.ready = True
        for rank, process in node.pending:
            self._send(node, "spawn", rank=rank, process=process)
        node.pending = []

    def _not_started(self, node: _Node, why: str) -> None:
        raise SpecError(
            [
                Diagnostic(
                    "parajob",
                    None,
                    None,
                    self._cluster.where,
                    f"node {node.index} on host {node.host} "
                    f"({node.worker_address}) could not start: {why}",
                    "see that Dask worker's log",
                )
            ]
        )

    def _drop(self, conn: socket.socket) -> None:
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    # ---- commands -----------------------------------------------------------------------

    def spawn(self, slot: int, node: int, local_rank: int) -> Worker:
        where = self._nodes[node]
        if where.lost is not None:
            raise SpawnError(
                f"node {node} ({where.host}, {where.worker_address}) was lost: {where.lost}"
            )
        process = self._next_process
        self._next_process += 1
        self._region.reset_worker(slot, process)
        worker = RemoteWorker(slot, process, node, local_rank)
        where.workers[process] = worker
        if not where.ready:
            where.pending.append((local_rank, process))
        else:
            self._send(where, "spawn", rank=local_rank, process=process)
        return worker

    def kill(self, worker: Worker, because: str) -> None:
        if worker.killed_because is None:
            worker.killed_because = because
        node = self._nodes[worker.node]
        if node.sock is not None and node.lost is None:
            self._send(node, "kill", process=worker.process)

    def terminate(self, worker: Worker) -> None:
        node = self._nodes[worker.node]
        if node.sock is not None and node.lost is None:
            self._send(node, "terminate", process=worker.process)

    def wake(self) -> None:
        os.eventfd_write(self._notify_fd, 1)

    def expired(self, limits: Limits) -> list[DeadlineExpired]:
        return []  # the nodes' watchdogs report in wait() ("expired" frames)

    def tend(self) -> None:
        self._check_futures(starting=False)

    def stop(self) -> None:
        pass  # each node process cleans up after its own workers (LocalExecutor.stop)

    def node_host(self, node: int) -> NodeHost:
        where = self._nodes[node]
        return NodeHost(node, where.host, where.worker_address)

    def attempt_times(
        self, batches: np.ndarray, attempts: np.ndarray, start_ns: np.ndarray, end_ns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The nodes' times where a node reported this attempt's end; otherwise (a timeout,
        a lost node) the driver's stamps shifted to its wall clock."""
        offset = time.time_ns() - _core.monotonic_ns()
        start, end = start_ns.astype(np.int64) + offset, end_ns.astype(np.int64) + offset
        batches = batches.astype(np.int64)
        reported = self._ran_attempt[batches] == attempts.astype(np.int64)
        start[reported] = self._ran_ns[batches[reported], 0]
        end[reported] = self._ran_ns[batches[reported], 1]
        return start, end

    def close(self) -> None:
        for node in self._nodes:
            if node.sock is not None:
                self._drop(node.sock)
                node.sock = None
            if node.future is not None:
                try:
                    node.future.cancel()
                except Exception:  # noqa: BLE001 - a client already gone
                    pass
        for conn in list(self._unidentified):
            self._drop(conn)
        self._selector.close()
        self._listener.close()
        os.close(self._notify_fd)

    # ---- waiting ------------------------------------------------------------------------

    def wait(self, timeout: float) -> list[Event]:
        self._poll(timeout)
        now = time.monotonic()
        for node in self._nodes:
            if (
                node.sock is not None
                and node.lost is None
                and now - node.last_heard > self._silence_s
            ):
                self._lose(node, f"no word from it for {self._silence_s:g} s")
        self._serve_wants()
        events, self._events = self._events, []
        return events

    def _poll(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            if key.data == "wake":
                try:
                    os.eventfd_read(self._notify_fd)
                except BlockingIOError:
                    pass
            elif key.data == "listen":
                self._accept()
            elif isinstance(key.data, FrameReader):
                reader = key.data
                frames = reader.read()
                if frames:
                    node = self._hello(reader, frames[0])
                    if node is not None:
                        self._handle(node, frames[1:])
                elif reader.closed:
                    del self._unidentified[reader.sock]
                    self._drop(reader.sock)
            else:
                self._read_node(key.data)

    def _read_node(self, node: _Node) -> None:
        assert node.reader is not None
        self._handle(node, node.reader.read())

    def _handle(self, node: _Node, frames: list[dict[str, Any]]) -> None:
        node.last_heard = time.monotonic()
        for frame in frames:
            handler = _HANDLERS.get(str(frame.get("t")))
            if handler is not None:
                handler(self, node, frame)
        if node.reader is not None and node.reader.closed and node.lost is None:
            if not node.ready:  # before its folder check passed: it could not start
                self._not_started(node, node.reader.why)
            self._lose(node, node.reader.why)

    def _check_futures(self, starting: bool) -> None:
        """A node agent's task that ended (its worker left the cluster, it raised)."""
        for node in self._nodes:
            future = node.future
            if node.lost is not None or future is None or not future.done():
                continue
            why = "its Dask task ended"
            try:
                result = future.result(timeout=1)
                why = f"its node process ended ({result})"
            except Exception as exc:  # noqa: BLE001 - whatever Dask says about it
                why = f"its Dask task failed: {type(exc).__name__}: {exc}"
            if starting and not node.ready:
                raise SpecError(
                    [
                        Diagnostic(
                            "parajob",
                            None,
                            None,
                            self._cluster.where,
                            f"node {node.index} ({node.host}, "
                            f"{node.worker_address}) could not start: {why}",
                            _environment_hint(why),
                        )
                    ]
                )
            if node.sock is None or node.reader is None or node.reader.closed:
                self._lose(node, why)

    def _send(self, node: _Node, frame_type: str, /, **fields: Any) -> None:
        if node.sock is None or node.lost is not None:
            return
        try:
            node.sock.setblocking(True)
            send_frame(node.sock, frame_type, **fields)
        except OSError as exc:
            self._lose(node, f"sending to it failed: {exc}")
        finally:
            if node.sock is not None:
                node.sock.setblocking(False)

    # ---- dispatch -----------------------------------------------------------------------

    def _serve_wants(self) -> None:
        """Claim attempts for the nodes that asked, under each node's virtual process."""
        for node in self._nodes:
            if node.want <= 0 or node.lost is not None or node.sock is None:
                continue
            pairs: list[list[int]] = []
            closed = False
            while len(pairs) < node.want:
                batch, attempt = self._region.next_batch(node.vslot, node.vproc, 0, False)
                if batch == -1:
                    closed = True
                    break
                if batch == -2:
                    break
                pairs.append([int(batch), int(attempt)])
            if pairs:
                node.want = 0
                self._send(node, "batches", pairs=pairs)
            # Closed and empty: the step is over; every node has a want pending once its
            # local queue runs low, so every node hears it here.
            if closed and not node.closed_sent:
                node.closed_sent = True
                self._send(node, "close")

    # ---- frames from a node -------------------------------------------------------------

    def _on_want(self, node: _Node, frame: dict[str, Any]) -> None:
        node.want = int(frame.get("n", 0))

    def _on_ended(self, node: _Node, frame: dict[str, Any]) -> None:
        region = self._region
        for row in frame.get("rows", []):
            batch, attempt, process, ok, items_in, items_out, offset, length, code = row[:9]
            worker = node.workers.get(process)
            if worker is None:
                continue
            if len(row) >= 11:  # the node's wall-clock start and end
                self._ran_attempt[batch] = attempt
                self._ran_ns[batch] = row[9:11]
            region.hand_over(worker.slot, batch, attempt, node.vproc, process, False)
            region.finish(
                worker.slot,
                batch,
                attempt,
                process,
                bool(ok),
                items_in,
                items_out,
                offset,
                length,
                code,
            )

    def _on_states(self, node: _Node, frame: dict[str, Any]) -> None:
        for process, state, batch, *pid in frame.get("rows", []):
            worker = node.workers.get(process)
            if worker is None or worker.dead:
                continue
            if pid:
                worker.pid = int(pid[0])
            node.in_run[process] = batch
            if self._region.worker_info(worker.slot)[1] == process:
                self._region.set_worker_state(worker.slot, _core.WorkerState(state))

    def _on_expired(self, node: _Node, frame: dict[str, Any]) -> None:
        worker = node.workers.get(int(frame["process"]))
        if worker is None or worker.dead:
            return
        batch, attempt = int(frame["batch"]), int(frame["attempt"])
        if batch >= 0:
            self._region.hand_over(worker.slot, batch, attempt, node.vproc, worker.process, True)
        self._events.append(
            DeadlineExpired(worker, batch, attempt, str(frame["kind"]), float(frame["elapsed_s"]))
        )

    def _on_died(self, node: _Node, frame: dict[str, Any]) -> None:
        worker = node.workers.get(int(frame["process"]))
        if worker is None or worker.dead:
            return
        for batch, attempt, in_run in frame.get("held", []):
            self._region.hand_over(
                worker.slot, batch, attempt, node.vproc, worker.process, bool(in_run)
            )
        code, sig = frame.get("code"), frame.get("signal")
        status = ExitStatus(code, sig, int(frame.get("peak_rss", 0)))
        self._died(node, worker, status, int(frame.get("state", 0)))

    def _on_bad_folder(self, node: _Node, frame: dict[str, Any]) -> None:
        raise SpecError(
            [
                Diagnostic(
                    "parajob",
                    None,
                    None,
                    self._cluster.where,
                    f"node {node.index} on host {frame.get('host', node.host)} "
                    f"({node.worker_address}) cannot use the run folder "
                    f"{self._layout.root.parent}: {frame.get('why')}",
                    "the run folder must be on a filesystem every node "
                    "sees at the same path (--run-dir)",
                )
            ]
        )

    def _died(self, node: _Node, worker: RemoteWorker, status: ExitStatus, state: int) -> None:
        worker.dead = True
        node.workers.pop(worker.process, None)
        node.in_run.pop(worker.process, None)
        self._events.append(WorkerDied(worker, status, state))

    def _lose(self, node: _Node, why: str) -> None:
        """The node is gone. The attempts its processes were running (by their last
        report) go to those processes, charged as a worker death is; its processes are
        reported dead; then the node's virtual worker is reported dead (a normal exit),
        so that the engine takes back every other attempt claimed for the node, for free
        (prefetched, or ended there but never reported)."""
        node.lost = why
        if node.sock is not None:
            self._drop(node.sock)
            node.sock = None
        because = (
            f"node {node.index} ({node.host}, Dask worker {node.worker_address}) was lost: {why}"
        )
        workers = list(node.workers.values())
        state, attempt, process = shm_view.unpack_states(self._slots["word"])
        held = set(((process == node.vproc) & (state == RUNNING)).nonzero()[0].tolist())
        for worker in workers:
            batch = node.in_run.get(worker.process, -1)
            if batch in held:
                self._region.hand_over(
                    worker.slot, batch, int(attempt[batch]), node.vproc, worker.process, True
                )
        for worker in workers:
            if worker.killed_because is None:
                worker.killed_because = because
            self._died(
                node,
                worker,
                ExitStatus(None, int(signal.SIGKILL), 0),
                int(_core.WorkerState.RUNNING),
            )
        # The virtual slot holds no attempt "in run()": reset, nothing of it is charged.
        self._region.reset_worker(node.vslot, node.vproc)
        self._region.set_worker_state(node.vslot, _core.WorkerState.EXITED)
        virtual = RemoteWorker(node.vslot, node.vproc, node.index, -1, killed_because=because)
        self._events.append(
            WorkerDied(virtual, ExitStatus(0, None, 0), int(_core.WorkerState.EXITED))
        )


_HANDLERS = {
    "ready": DaskExecutor._on_ready,
    "want": DaskExecutor._on_want,
    "ended": DaskExecutor._on_ended,
    "states": DaskExecutor._on_states,
    "expired": DaskExecutor._on_expired,
    "died": DaskExecutor._on_died,
    "bad_folder": DaskExecutor._on_bad_folder,
}


def _silence_limit() -> float:
    """How long a node may stay silent: $PARAJOB_NODE_TIMEOUT seconds, else the default
    (a value that is not a number above 1 s is ignored, with a warning)."""
    text = os.environ.get(HEARTBEAT_ENV)
    if text is None:
        return HEARTBEAT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 1.0:
        terminal.echo(
            f"parajob: warning: {HEARTBEAT_ENV}={text!r} is not a number of seconds "
            f"above 1; using {HEARTBEAT_TIMEOUT_S:g}",
            err=True,
        )
        return HEARTBEAT_TIMEOUT_S
    return value


def _local_ip_towards(address: str) -> str:
    """This machine's address on the route to the scheduler (no packet is sent)."""
    host = address.partition("://")[2].rpartition(":")[0].strip("[]") or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "0.0.0.0"
    finally:
        probe.close()


__all__ = [
    "Cluster",
    "DaskExecutor",
    "RemoteWorker",
    "choose_workers",
    "connect_cluster",
    "tls_security",
]
