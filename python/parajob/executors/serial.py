"""The serial executor: init/run/shutdown in the calling process and thread (--serial).

For debugging: breakpoint() and pdb work in the entry script, because nothing is forked
and stdin/stdout/stderr stay the caller's (the terminal's). The engine, the region, the
worker's own per-mini-batch code (runtime/worker.py _run_one, the C++ ResultWriter), the
spool records, the journal, the logs and the merge are those of a parallel run:

    engine.wait() --> SerialExecutor.wait(): one step of one worker, in this thread
                        first call:  prepare_environment, import, init()
                        then:        region.next_batch -> _run_one -> ResultWriter.flush
                                     (the attempt's end is in the done ring on return)
                        queue closed: shutdown(), then the process state is put back
                                      -> WorkerDied(code 0, EXITED)

What differs from the local executor, and why:
- Timeouts are reported, not enforced: a mini-batch that ran past retry_settings.timeout
  is noted in the worker's error log and on stderr (one cannot kill a thread, and a
  debugger stopped at a breakpoint would "time out"). So are init()'s and the progress
  limits, which the engine gets as infinite (:func:`serial_limits`).
- init() is tried once (max_init_failures_per_node is 1 here): a parallel run retries it
  in a fresh process, for causes a process start has (out of memory, a GPU not yet free);
  retrying in the same process would run it again on whatever the failed try left behind,
  and whoever debugs wants the first traceback.
- A KeyboardInterrupt (Ctrl-C, also at a pdb prompt) in user code stops the step as
  interrupted and resumable (event Interrupted); the attempt it was in stays undecided, so
  --resume runs it again. So does quitting pdb (``q``: bdb.BdbQuit), which would otherwise
  be run() raising: a failed try, retried, the prompt back once per try and mini-batch.
  With the CLI's signal handlers installed, the engine's handler calls wake(), which
  raises KeyboardInterrupt when user code is running. Without them (parajob.run: Ctrl-C
  is the host's, ``host_interrupts``) the exception goes on up instead, as it does from
  a parallel run's engine: the engine's ``finally`` stops this worker (state put back,
  journal written) and the host gets its KeyboardInterrupt (or BdbQuit).
- No recycling (--max-tasks-per-worker, --max-worker-memory): there is no process to
  replace.

Invariant: environment variables, sys.argv, sys.path, the working folder, the modules
imported from task.code (the entry script included: imported fresh each run) and the
logging handlers the run added are put back as they were, however the run ends.
"""

from __future__ import annotations

import bdb
import dataclasses
import logging
import math
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parajob import _core, terminal
from parajob.executors.base import (
    DeadlineExpired,
    Event,
    ExitStatus,
    Interrupted,
    OnThisMachine,
    Worker,
    WorkerDied,
)
from parajob.runtime.accounting import Limits
from parajob.runtime.entry_script import EntryScript
from parajob.runtime.layout import node_name, process_name
from parajob.runtime.report import append_line
from parajob.runtime.worker import (
    EXIT_INIT_FAILED,
    WorkerSetup,
    _run_one,
    init_failed,
    load_and_init,
    open_result_files,
    prepare_environment,
    shut_down,
)

WorkerState = _core.WorkerState
# What stops the step as interrupted when user code raises it: Ctrl-C, and pdb's quit.
_STOPS = (KeyboardInterrupt, bdb.BdbQuit)


def serial_limits(limits: Limits) -> Limits:
    """The limits the engine enforces in serial mode: no clock-based one (a breakpoint
    would trip it), init() tried once (see the module docstring)."""
    return dataclasses.replace(
        limits,
        init_timeout_s=math.inf,
        first_task_creation_timeout_s=math.inf,
        progress_update_timeout_s=math.inf,
        max_init_failures_per_node=1,
    )


class _InterruptibleWriter(_core.ResultWriter):
    """The C++ ResultWriter, except that the record of an attempt ended by a
    KeyboardInterrupt (or pdb's quit) is never written: it goes on up (the worker's _run_one
    turns every exception of run() into an ERRORED record, which would spend a try)."""

    def add(
        self,
        batch: int,
        attempt: int,
        ok: bool,
        payload: bytes,
        items_in: int,
        items_out: int,
        error_code: int,
        run_seconds: float,
    ) -> None:
        handling = sys.exc_info()[1]  # _run_one calls us from its except block
        if isinstance(handling, _STOPS):
            raise handling
        super().add(batch, attempt, ok, payload, items_in, items_out, error_code, run_seconds)


@dataclass
class _HostState:
    """What preparing and running the entry script changes in this process."""

    environ: dict[str, str]
    argv_list: list[str]  # the caller's own list object (the worker assigns a new one)
    argv: list[str]
    path: list[str]
    cwd: str
    modules: set[str]
    root_handlers: list[logging.Handler]
    root_level: int

    @classmethod
    def capture(cls) -> _HostState:
        root = logging.getLogger()
        return cls(
            dict(os.environ),
            sys.argv,
            list(sys.argv),
            list(sys.path),
            os.getcwd(),
            set(sys.modules),
            list(root.handlers),
            root.level,
        )

    def restore(self, code_dir: Path, shadowed: dict[str, Any]) -> None:
        """Put it all back; ``shadowed``: modules the entry script's name replaced."""
        os.chdir(self.cwd)
        # Key by key, never clear(): another thread of the caller may read the environment.
        for name in [n for n in os.environ if n not in self.environ]:
            del os.environ[name]
        for name, value in self.environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        sys.argv = self.argv_list
        sys.argv[:] = self.argv
        sys.path[:] = self.path
        code = str(code_dir.resolve())
        for name in set(sys.modules) - self.modules:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if name.startswith("azureml_user") or os.path.abspath(file).startswith(code):
                del sys.modules[name]  # imported fresh by the next run
        sys.modules.update(shadowed)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h not in self.root_handlers]:
            root.removeHandler(handler)
        root.setLevel(self.root_level)
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if name.startswith("parajob.entry_script.") and isinstance(logger, logging.Logger):
                for handler in list(logger.handlers):  # EntryScript().logger's log file
                    logger.removeHandler(handler)
                    handler.close()


class SerialExecutor(OnThisMachine):
    """One worker slot, served in the calling thread from inside wait()."""

    def __init__(
        self,
        setup: WorkerSetup,
        limits: Limits,
        first_process: int = 1,
        quiet: bool = False,
        host_interrupts: bool = False,
    ) -> None:
        """host_interrupts: a KeyboardInterrupt/BdbQuit in user code is the host's (no
        handler of ours is installed): raised on, not turned into Interrupted."""
        self._setup = setup
        self._host_interrupts = host_interrupts
        self._run_timeout_s = limits.run_timeout_s  # reported, not enforced
        self._next_process = first_process
        self._quiet = quiet
        self._worker: Worker | None = None
        self._script: EntryScript | None = None
        self._writer: _InterruptibleWriter | None = None
        self._fds: tuple[int, ...] = ()
        self._host: _HostState | None = None
        self._shadowed: dict[str, Any] = {}
        self._ending: ExitStatus | None = None  # set by kill()/terminate()
        self._in_user_code = False

    # ---- commands ---------------------------------------------------------------------

    def start(self) -> None:
        pass  # nothing forked: no janitor, no subreaper

    def spawn(self, slot: int, node: int, local_rank: int) -> Worker:
        """A worker record only: importing and init() happen in the next wait()."""
        process = self._next_process
        self._next_process += 1
        self._setup.region.reset_worker(slot, process)
        self._setup.region.set_worker_pid(slot, os.getpid())
        self._worker = Worker(slot, process, node, local_rank, pid=os.getpid())
        self._ending = None
        return self._worker

    def kill(self, worker: Worker, because: str) -> None:
        if worker.killed_because is None:
            worker.killed_because = because
        self._ending = ExitStatus(None, int(signal.SIGKILL), _peak_rss())

    def terminate(self, worker: Worker) -> None:
        if self._ending is None:
            self._ending = ExitStatus(None, int(signal.SIGTERM), _peak_rss())

    def expired(self, limits: Limits) -> list[DeadlineExpired]:
        return []  # reported after each mini-batch instead (_report_overrun)

    def wake(self) -> None:
        """From the engine's signal handler: interrupt the user's code, if it runs now."""
        if self._in_user_code:
            raise KeyboardInterrupt

    def tend(self) -> None:
        pass

    def stop(self) -> None:
        if self._worker is not None:  # the engine gave up waiting: put things back anyway
            self._end(ExitStatus(None, int(signal.SIGKILL), _peak_rss()))

    def close(self) -> None:
        pass

    # ---- the worker, one step per wait() ---------------------------------------------------

    def wait(self, timeout: float) -> list[Event]:
        """Run the next step of the worker's life (user code included, so this may take
        any time); ``timeout`` does not apply."""
        worker = self._worker
        if worker is None:
            time.sleep(min(timeout, 0.01))  # no worker (the engine is about to stop)
            return []
        if self._ending is not None:
            return self._end(self._ending)
        try:
            if self._script is None:
                return self._start(worker)
            return self._next(worker)
        except _STOPS as stop:
            self._in_user_code = False
            if self._host_interrupts:
                raise
            quit_pdb = isinstance(stop, bdb.BdbQuit)
            return [Interrupted(how="quitting pdb (q)" if quit_pdb else None)]

    def _start(self, worker: Worker) -> list[Event]:
        setup = self._setup
        self._host = _HostState.capture()
        stem = Path(setup.entry_script).stem
        self._shadowed = {stem: sys.modules[stem]} if stem in sys.modules else {}
        prepare_environment(setup, worker.node, worker.local_rank)
        setup.region.set_worker_state(worker.slot, WorkerState.INIT)
        try:
            self._in_user_code = True
            self._script = load_and_init(setup)
        except _STOPS:
            raise
        except BaseException:  # noqa: BLE001 - user code may raise anything
            init_failed(setup, self._error_log(worker), worker.slot, worker.process)
            return self._end(ExitStatus(EXIT_INIT_FAILED, None, _peak_rss()))
        finally:
            self._in_user_code = False
        self._fds = open_result_files(setup, worker.process)
        self._writer = _InterruptibleWriter(
            setup.region,
            worker.slot,
            worker.process,
            self._fds[0],
            self._fds[1],
            f"{worker.node_name},{worker.name}",
        )
        setup.region.set_worker_state(worker.slot, WorkerState.IDLE)
        return []

    def _next(self, worker: Worker) -> list[Event]:
        setup, script, writer = self._setup, self._script, self._writer
        assert script is not None and writer is not None
        loading = setup.plan.loads_data
        batch, attempt = setup.region.next_batch(worker.slot, worker.process, 0, loading)
        if batch == -1:  # closed and empty: the step is over
            self._close_writer()
            self._in_user_code = True
            try:
                shut_down(setup, script, self._error_log(worker), worker.slot, worker.process)
            finally:
                self._in_user_code = False
            return self._end(ExitStatus(0, None, _peak_rss()))
        if batch == -2:
            return []  # nothing queued right now: the engine requeues between our steps
        started = time.monotonic()
        self._in_user_code = True
        try:
            _run_one(
                setup,
                script,
                setup.encode,
                writer,
                self._error_log(worker),
                worker.slot if loading else -1,
                worker.process,
                batch,
                attempt,
            )
        finally:
            self._in_user_code = False
        writer.flush()  # published now: the engine drains this attempt's end next
        self._report_overrun(worker, batch, attempt, time.monotonic() - started)
        return []

    def _report_overrun(self, worker: Worker, batch: int, attempt: int, seconds: float) -> None:
        if seconds <= self._run_timeout_s:
            return
        text = (
            f"mini-batch {batch} attempt {attempt + 1} ran {seconds:.1f} s, past "
            f"retry_settings.timeout ({self._run_timeout_s:g} s); not enforced with "
            "--serial (a parallel run would have killed it and tried again)"
        )
        append_line(self._error_log(worker), text)
        if not self._quiet:
            terminal.echo(f"parajob: warning: {text}", err=True)

    def _end(self, status: ExitStatus) -> list[Event]:
        """The worker's end: its files closed, the process state put back."""
        worker = self._worker
        assert worker is not None
        self._close_writer()
        if self._host is not None:
            self._host.restore(self._setup.code_dir, self._shadowed)
            self._host = None
        self._worker, self._script, self._ending = None, None, None
        state = self._setup.region.worker_info(worker.slot)[2]
        return [WorkerDied(worker, status, state)]

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer = None  # its flusher thread is joined as it is freed
        for fd in self._fds:
            os.close(fd)
        self._fds = ()

    def _error_log(self, worker: Worker) -> Path:
        return self._setup.layout.user_log(
            "error", node_name(worker.node), process_name(worker.local_rank)
        )


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
