"""The worker process: entry-script lifecycle, the pop-run-finish loop, result spooling.

Runs in a child forked by the driver (executors/local.py) and never returns: it ends with
os._exit() so that the driver's atexit handlers and buffered files are never run twice.

    next_batch()  -- claim QUEUED(k) as RUNNING(k, me), blocks on a futex when idle
        |
    materialise   -- list of paths (files) / DataFrame (tables)
        |
    run()         -- user code; exceptions and wrong return types become ERRORED
        |
    ResultWriter  -- (C++) the formatted rows (or the traceback) as a record in this
        |            process's own spool, gathered for quick runs, then for each one:
    finish()      -- CAS RUNNING(k, me) -> DONE/ERRORED; loses to the watchdog if too late
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from parajob import _core

# Imported here, in the driver, rather than in each worker after fork: a worker that
# imports them itself pays ~25 ms of start-up (seen in py-spy profiles of short jobs).
from parajob.compat import install_azureml_user_shim
from parajob.compat.parallel_run import EntryScript as CompatEntryScript
from parajob.data.batch_plan import BatchPlan
from parajob.runtime import fd_guard, output
from parajob.runtime.entry_script import (
    EntryScript,
    EntryScriptError,
    MiniBatchContext,
    bind_entry_script,
    bind_failure,
    import_entry_script,
    import_failure,
)
from parajob.runtime.failures import user_traceback
from parajob.runtime.layout import StepLayout, node_name, process_name
from parajob.runtime.profiling import RunProfiler, profile_paths
from parajob.runtime.report import append_line, worker_attempts_part
from parajob.runtime.shm_view import ERROR_RAISED, ERROR_WRONG_TYPE
from parajob.runtime.spool import spool_path

# Worker exit codes the driver interprets (anything else is a crash).
EXIT_OK = 0
EXIT_INIT_FAILED = 3
EXIT_RECYCLE = 4  # --max-tasks-per-worker / --max-worker-memory reached: replace me
# The entry script did not import, or has no usable run()/init()/shutdown(): the record
# of why is at StepLayout.script_check(process) (runtime/preflight.py: the first step's
# workers are `parajob run`'s import check).
EXIT_SCRIPT_REJECTED = 5
EXIT_INTERNAL = 70

IDLE_WAKE_MS = 2000  # wake up now and then while idle, to refresh the heartbeat


@dataclass
class WorkerSetup:
    """Everything a worker needs; built by the driver and inherited through fork()."""

    region: _core.DispatchRegion
    plan: BatchPlan
    layout: StepLayout
    code_dir: Path
    entry_script: str
    argv: tuple[str, ...]
    environment: dict[str, str]
    append_row: bool
    csv_options: dict[str, Any]
    logging_level: str
    output_dir: Path
    driver_pid: int
    dataset: Any = None
    max_tasks: int | None = None  # recycle the process after this many mini-batches
    max_memory_bytes: int | None = None  # recycle it once its resident memory exceeds this
    # GPU ids handed out one per worker (docs/contract.md §3.3), a replacement reusing its
    # id: see gpu_for.
    gpus: tuple[str, ...] = ()
    workers_per_node: int = 1
    # True: every node of the step runs on this machine (simulated nodes) and shares its
    # GPUs; False: this is one real node (a Dask cluster's) and its GPUs are its own.
    nodes_share_gpus: bool = True
    # A caller's callables (parajob.map_batches), inherited through fork, never imported
    # nor pickled: used instead of importing entry_script from code_dir. Such a worker keeps
    # the caller's working folder and sys.argv (a closure's relative paths still resolve).
    script: EntryScript | None = None
    # How an accepted run() result becomes its spool record; None: append_row's text rows
    # (or nothing, without append_row).
    encode: Callable[[Any], bytes] | None = None
    profiling_module: str | None = None  # --profiling_module: run() profiled (profiling.py)


def worker_main(
    setup: WorkerSetup, slot: int, process: int, node: int, local_rank: int
) -> NoReturn:
    """Entry point of a forked worker. Never returns."""
    # First: move every object inherited from the driver out of the cyclic GC's reach, so
    # that this process's collections never write to the pages it shares with the driver
    # (each such write is a copy-on-write fault). Done here, after fork, rather than in the
    # driver: a gc.freeze() there, and the gc.unfreeze() it needs after, would also thaw
    # objects a host program (parajob.run's caller) had frozen for its own reasons.
    gc.freeze()
    code = EXIT_INTERNAL
    redirected = False
    try:
        _detach_from_driver(setup.driver_pid)
        _redirect_output(setup.layout, node, local_rank)
        redirected = True
        code = _serve(setup, slot, process, node, local_rank)
    except BaseException as exc:  # noqa: BLE001 - last resort: report and die, never hang
        try:
            if redirected:  # into the worker's own stderr log
                traceback.print_exc()
            else:  # still the driver's terminal: one line, not our traceback
                print(f"parajob: worker process {process} could not start: {exc}", file=sys.stderr)
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


def _detach_from_driver(driver_pid: int) -> None:
    # Own process group: the driver kills a hung worker with killpg, grandchildren included.
    os.setpgid(0, 0)
    # Die with the driver (no orphans): the kernel sends SIGKILL when the parent exits.
    _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != driver_pid:  # the driver died before prctl took effect
        os._exit(EXIT_INTERNAL)
    # Ctrl-C is the driver's to handle: it stops dispatching and then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _set_parent_death_signal(sig: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)


def _redirect_output(layout: StepLayout, node: int, local_rank: int) -> None:
    node_dir, name = node_name(node), process_name(local_rank)
    for fd, kind in ((1, "stdout"), (2, "stderr")):
        path = layout.user_log(kind, node_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(
        1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
    )
    sys.stderr = open(
        2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
    )
    faulthandler.enable(file=sys.stderr)  # segfaults leave a Python traceback in stderr


def prepare_environment(setup: WorkerSetup, node: int, local_rank: int) -> None:
    """The process state the entry script runs in (docs/contract.md §3.3): its working folder, its
    environment variables, sys.argv, the azureml_user shim, EntryScript's logs."""
    node_dir, name = node_name(node), process_name(local_rank)
    if setup.script is None:  # an entry-script file: docs/contract.md §3.3
        work = setup.layout.work_dir / node_dir / name
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)  # docs/contract.md §3.3: a private working folder
        sys.argv = [str(setup.code_dir / setup.entry_script), *setup.argv]
    os.environ.update(setup.environment)
    os.environ["AZUREML_BI_OUTPUT_PATH"] = str(setup.output_dir)
    if setup.gpus:
        os.environ["AZ_BATCHAI_GPU_COUNT_FOUND"] = str(len(setup.gpus))
        gpu = gpu_for(setup.gpus, setup.workers_per_node, node, local_rank, setup.nodes_share_gpus)
        # Workers beyond the GPU count get no variable (as on Azure); a value the step sets
        # in environment_variables is the user's choice and stays.
        if gpu is not None and "CUDA_VISIBLE_DEVICES" not in setup.environment:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    install_azureml_user_shim()
    CompatEntryScript.configure(
        agent_name=name,
        log_dir=setup.layout.logs / "user" / "entry_script_log" / node_dir,
        log_file=setup.layout.user_log("entry_script_log", node_dir, name),
        output_dir=setup.output_dir,
        logging_level=setup.logging_level,
    )


def gpu_for(
    gpus: tuple[str, ...], workers_per_node: int, node: int, local_rank: int, nodes_share_gpus: bool
) -> str | None:
    """The GPU id (CUDA_VISIBLE_DEVICES value) of worker ``local_rank`` of ``node``; None
    for a worker beyond the GPU count. Nodes simulated on one machine share its GPUs, so
    they are numbered across nodes (node * workers_per_node + rank: no two workers of the
    step get the same GPU); a real node has its own, numbered by rank alone (node 1's
    first worker gets that machine's first GPU, as on Azure)."""
    index = node * workers_per_node + local_rank if nodes_share_gpus else local_rank
    return gpus[index] if index < len(gpus) else None


def _serve(setup: WorkerSetup, slot: int, process: int, node: int, local_rank: int) -> int:
    region = setup.region
    prepare_environment(setup, node, local_rank)
    error_log = setup.layout.user_log("error", node_name(node), process_name(local_rank))

    region.set_worker_state(slot, _core.WorkerState.INIT)
    try:
        script = setup.script or _load_checked(setup, process)
    except BaseException:  # noqa: BLE001 - user code may raise anything, SystemExit included
        init_failed(setup, error_log, slot, process)  # the engine may count it as one
        return EXIT_SCRIPT_REJECTED
    try:
        if script.init is not None:
            script.init()
    except BaseException:  # noqa: BLE001 - user code may raise anything, SystemExit included
        init_failed(setup, error_log, slot, process)
        return EXIT_INIT_FAILED
    # Chosen once here, never per call: the option off leaves _run_one's path untouched.
    profiler = RunProfiler(setup.profiling_module) if setup.profiling_module else None
    if profiler is not None:
        script = profiler.wrap(script)

    spool_fd, attempts_fd = open_result_files(setup, process)
    writer = _core.ResultWriter(
        region,
        slot,
        process,
        spool_fd,
        attempts_fd,
        f"{node_name(node)},{process_name(local_rank)}",
    )
    region.set_worker_state(slot, _core.WorkerState.IDLE)
    tasks = 0
    exit_code = EXIT_OK
    encode = setup.encode
    loading = setup.plan.loads_data  # else the claim starts the run() clock
    while True:
        batch, attempt = region.next_batch(slot, process, 0, loading)
        if batch == -2:  # nothing queued: publish what is gathered before we may block
            writer.flush()
            batch, attempt = region.next_batch(slot, process, IDLE_WAKE_MS, loading)
        if batch == -1:
            break
        if batch == -2:
            if os.getppid() != setup.driver_pid:
                return EXIT_INTERNAL
            region.set_worker_state(slot, _core.WorkerState.IDLE)  # heartbeat
            continue
        _run_one(
            setup,
            script,
            encode,
            writer,
            error_log,
            slot if loading else -1,
            process,
            batch,
            attempt,
        )
        tasks += 1
        if _should_recycle(setup, tasks):
            exit_code = EXIT_RECYCLE  # between mini-batches: nothing held, nothing lost
            break

    writer.flush()
    os.close(spool_fd)
    os.close(attempts_fd)
    if profiler is not None:
        _write_profile(setup, profiler, error_log, node, local_rank, process)
    shut_down(setup, script, error_log, slot, process)
    return exit_code


def _write_profile(
    setup: WorkerSetup,
    profiler: RunProfiler,
    error_log: Path,
    node: int,
    local_rank: int,
    process: int,
) -> None:
    prof, text = profile_paths(
        setup.layout.logs, node_name(node), process_name(local_rank), process
    )
    try:
        profiler.write(prof, text)
    except OSError as exc:  # the stats are lost, the results are not
        append_line(error_log, f"--profiling_module: could not write {prof}: {exc}")


# ---- the pieces of a worker's life, shared with the serial executor (executors/serial.py) --


def load_and_init(setup: WorkerSetup) -> EntryScript:
    """Import the entry script (unless the setup carries one already bound: map_batches),
    bind init/run/shutdown, call init(). Raises whatever the
    user's code raises (the caller decides what that means)."""
    script = setup.script or bind_entry_script(
        import_entry_script(setup.code_dir, setup.entry_script)
    )
    if script.init is not None:
        script.init()
    return script


def _load_checked(setup: WorkerSetup, process: int) -> EntryScript:
    """Import and bind the entry script; on failure, leave the same record the import
    check's probe writes (entry_script.import_failure / bind_failure) at
    StepLayout.script_check(process), then raise again. Written atomically (a rename):
    the driver reads it only after this process exited, but a half record must never be
    read as another failure."""
    try:
        module = import_entry_script(setup.code_dir, setup.entry_script)
    except BaseException as exc:
        _write_record(setup.layout.script_check(process), import_failure(exc))
        raise
    try:
        return bind_entry_script(module)
    except EntryScriptError as exc:
        _write_record(setup.layout.script_check(process), bind_failure(module, exc))
        raise


def _write_record(path: Path, record: dict[str, Any]) -> None:
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):  # no record: the engine sees an init failure
        pass


def init_failed(setup: WorkerSetup, error_log: Path, slot: int, process: int) -> None:
    """Called while handling the exception of load_and_init: its traceback to the error
    log, the slot INIT_FAILED (what the engine reads as an init failure)."""
    exc = sys.exc_info()[1]
    text = user_traceback(exc) if exc is not None else traceback.format_exc()
    append_line(error_log, f"init() failed in process {process}:\n{text}")
    setup.region.set_worker_state(slot, _core.WorkerState.INIT_FAILED)


def open_result_files(setup: WorkerSetup, process: int) -> tuple[int, int]:
    """The process's spool and attempts-CSV part, opened for appending: (spool, attempts)."""
    # High and O_CLOEXEC: out of reach of user code that writes to "every" inherited fd.
    spool_fd = fd_guard.move_high(
        os.open(
            spool_path(setup.layout.spool_dir, process),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o644,
        )
    )
    attempts_fd = fd_guard.move_high(
        os.open(
            worker_attempts_part(setup.layout, process),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o644,
        )
    )
    return spool_fd, attempts_fd


def shut_down(
    setup: WorkerSetup, script: EntryScript, error_log: Path, slot: int, process: int
) -> None:
    """shutdown() (a failure is logged, never fatal), then the slot EXITED."""
    setup.region.set_worker_state(slot, _core.WorkerState.SHUTDOWN)
    if script.shutdown is not None:
        try:
            script.shutdown()
        except BaseException:  # noqa: BLE001
            append_line(
                error_log, f"shutdown() failed in process {process}:\n{traceback.format_exc()}"
            )
    setup.region.set_worker_state(slot, _core.WorkerState.EXITED)


def _should_recycle(setup: WorkerSetup, tasks: int) -> bool:
    if setup.max_tasks is not None and tasks >= setup.max_tasks:
        return True
    if setup.max_memory_bytes is not None and tasks % 8 == 0:  # /proc read: ~5 us, not every time
        with open("/proc/self/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") > setup.max_memory_bytes
    return False


def _run_one(
    setup: WorkerSetup,
    script: EntryScript,
    encode: Callable[[Any], bytes] | None,
    writer: _core.ResultWriter,
    error_log: Path,
    slot: int,
    process: int,
    batch: int,
    attempt: int,
) -> None:
    """One attempt of one mini-batch, from materialising to its spool record. The hot path:
    no allocation or call here that is not needed (see bench/test_bench_job.py). slot is -1
    when the claim already started the run() clock (a plan that loads no data). encode:
    the caller's record of a result (map_batches), else None: append_row's rows; an error
    it raises fails the attempt like one of run()'s. A local None check: YAML jobs pay
    nothing measurable for it."""
    plan = setup.plan
    items_in = 0
    started = time.perf_counter()
    try:
        mini_batch = plan.materialise(batch)  # under --task_overhead_timeout (LOADING)
        items_in = len(mini_batch)
        if slot >= 0:  # the plan loads data: run()'s own timeout starts now
            setup.region.set_worker_state(slot, _core.WorkerState.RUNNING)
        if script.takes_context:
            context = MiniBatchContext(batch, plan.partition_key_value(batch), setup.dataset)
            result = script.run(mini_batch, context)
        else:
            result = script.run(mini_batch)
        items_out = output.count_items(result)
        if items_out is None:
            detail = (
                f"run() returned {type(result).__name__}; it must return a list, a tuple "
                "or a pandas DataFrame with one element or row per processed item\n"
            )
            _fail(
                writer, error_log, process, batch, attempt, items_in, ERROR_WRONG_TYPE, detail, plan
            )
            return
        payload = (
            encode(result)
            if encode is not None
            else output.format_rows(result, setup.csv_options)
            if setup.append_row
            else b""
        )
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        detail = user_traceback(exc)
        _fail(writer, error_log, process, batch, attempt, items_in, ERROR_RAISED, detail, plan)
        return
    writer.add(batch, attempt, True, payload, items_in, items_out, 0, time.perf_counter() - started)


def _fail(
    writer: _core.ResultWriter,
    error_log: Path,
    process: int,
    batch: int,
    attempt: int,
    items_in: int,
    error_code: int,
    detail: str,
    plan: BatchPlan,
) -> None:
    """End an attempt as ERRORED; its traceback goes to the error log and the spool. A
    sub-batch of --isolate_failures is named with its mini-batch (IsolatingPlan.label)."""
    label = getattr(plan, "label", None)
    what = label(batch) if label is not None else f"mini-batch {batch}"
    text = f"{what} attempt {attempt + 1} (process {process}):\n{detail}"
    append_line(error_log, text)
    writer.add(
        batch,
        attempt,
        False,
        text.encode("utf-8", "backslashreplace"),
        items_in,
        0,
        error_code,
        0.0,
    )
