"""Running one parallel step: plan, region, workers, merge, report.

This module wires the pieces; each has its own module:

    spec.ParallelStep --plan_file_batches--> FileBatchPlan (C++ listing + split)
            |
            v
    DispatchRegion (C++, shared memory, made before fork)
            |                 ^ claim / finish (CAS)
            v                 |
    Engine (runtime.engine) --> executor (executors.local: fork; executors.serial: this
            |                   thread) --> runtime.worker's per-mini-batch code --> spools
            |
            v
    merge of DONE records in mini-batch order --> append_row output; job_result.txt
"""

from __future__ import annotations

import ast
import dataclasses
import filecmp
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parajob import _core, terminal
from parajob.data import TableInputError, Where, plan_input
from parajob.data.batch_plan import BatchPlan
from parajob.data.files import InputDataError
from parajob.errors import Diagnostic, SpecError
from parajob.executors.base import Executor
from parajob.executors.local import LocalExecutor
from parajob.runtime import fd_guard, shm_view
from parajob.runtime.accounting import Limits, Tally
from parajob.runtime.computes import cluster_for, compute_origin, simulated_nodes_note
from parajob.runtime.engine import Engine
from parajob.runtime.entry_script import ProbeResult, module_names, probe_result
from parajob.runtime.fingerprint import (
    Change,
    CodeWatch,
    FingerprintError,
    RunFingerprint,
    first_change,
)
from parajob.runtime.gpus import visible_gpus
from parajob.runtime.isolation import (
    Bisection,
    IsolatingPlan,
    PieceTable,
    capacity_for,
    merge_order,
    write_quarantine,
)
from parajob.runtime.journal import (
    Accepted,
    JournalWriter,
    journal_path,
    journal_start,
    read_journal,
)
from parajob.runtime.layout import StepLayout
from parajob.runtime.monitor import Monitor
from parajob.runtime.options import RunOptions
from parajob.runtime.output import load_csv_options
from parajob.runtime.parent_logs import copy_logs_to_parent
from parajob.runtime.progress import Progress
from parajob.runtime.report import AttemptLog, Outcome, write_job_result
from parajob.runtime.skip_items import SkippingPlan, find, read_skip_list, skip_digest
from parajob.runtime.spool import spool_path, write_atomically
from parajob.runtime.worker import WorkerSetup
from parajob.spec.model import CommandStep, ParallelStep

if TYPE_CHECKING:
    from parajob.executors.dask import Cluster


def default_concurrency(gpus: tuple[str, ...] = ()) -> int:
    """Worker processes per node when the step does not say: 1 on a GPU machine, else the
    usable CPU cores (docs/contract.md §2.1)."""
    return 1 if gpus else len(os.sched_getaffinity(0)) or 1


MAX_WORKERS_PER_CORE = 8  # past this many processes per core a machine thrashes, not runs
MIN_MAX_WORKERS = 64  # ... but I/O-bound jobs on small machines may still want 64


def worker_counts(instance_count: int, per_node: int, n_batches: int) -> tuple[int, int]:
    """(nodes, workers per node) to start: never more workers than mini-batches (a worker
    without one would only run init() and shutdown()), nor more processes in all than
    max(MIN_MAX_WORKERS, MAX_WORKERS_PER_CORE x cores) on this machine, which is warned
    about (``max_concurrency_per_instance: 100000000`` used to fork until the machine gave
    out). Simulated nodes keep at least one worker each."""
    cap = max(MIN_MAX_WORKERS, MAX_WORKERS_PER_CORE * default_concurrency())
    instances = max(1, min(instance_count, n_batches, cap))
    wanted = min(per_node, -(-n_batches // instances))  # ceil: the batches of one node
    workers = max(1, min(wanted, cap // instances))
    if instances * workers < min(instance_count * per_node, n_batches):
        terminal.echo(
            f"warning: {instance_count} node(s) x {per_node} workers is more than "
            f"this machine can run ({cap} processes: {MAX_WORKERS_PER_CORE} per "
            f"core); starting {instances} x {workers}",
            err=True,
        )
    return instances, workers


def run_parallel_step(
    step: ParallelStep, run_dir: Path, options: RunOptions | None = None, compute: str | None = None
) -> Outcome:
    """Run one step to the end. Raises SpecError for bad input before any worker starts.
    compute: the step's compute name (the pipeline's default_compute when the step names
    none); mapped in options.computes, the step runs on that Dask cluster."""
    options = options or RunOptions()
    started = time.monotonic()
    layout = StepLayout(run_dir / step.name)
    check_entry_script(step)
    plan = _plan(step)
    address = cluster_for(options, compute)
    on_cluster = address is not None and not options.serial
    # Checked before connecting: a refusal leaves no cluster connection behind.
    isolation = isolate_failures(step, options, on_cluster)
    skipped = _skipped(step, options, on_cluster)
    cluster = None
    if address is not None and not options.serial:
        from parajob.executors.dask import connect_cluster  # imports distributed: only here

        cluster = connect_cluster(
            address, compute or "", step.instance_count, compute_origin(options, compute or "")
        )
    csv_options = _csv_options(step)
    output_file = append_row_target(step, layout)
    settings = step_settings(step, output_file, run_dir)
    if skipped:
        plan = SkippingPlan(plan, find(plan, skipped, step.name))
        settings["skip_items"] = skip_digest(skipped)  # a resume must skip the same
    restored = _restored_batches(step, layout, plan, run_dir, options, settings)
    layout.create()
    _make_output_folders(step, layout)
    args = step.runtime_args
    if args.profiling_module and options.serial:
        terminal.echo(
            f"parajob: warning: --profiling_module {args.profiling_module} has no "
            "effect with --serial (it profiles worker processes); run without "
            "--serial to profile run()",
            err=True,
        )
    gpus = tuple(visible_gpus())
    # The program argument wins over the YAML field, as on Azure (it comes last there).
    asked = (
        args.process_count_per_node
        or step.max_concurrency_per_instance
        or default_concurrency(gpus)
    )

    def make_setup(region: _core.DispatchRegion, workers_per_node: int) -> WorkerSetup:
        return _worker_setup(
            step,
            layout,
            plan,
            output_file,
            csv_options,
            gpus,
            options.max_tasks_per_worker,
            options.max_worker_memory_bytes,
            region,
            workers_per_node,
        )

    recipe = NodeRecipe(
        step,
        run_dir,
        options.max_tasks_per_worker,
        options.max_worker_memory_bytes,
        plan.n_batches,
        plan.n_items,
    )
    planned = PlannedStep(
        step.name,
        layout,
        plan,
        step_limits(step, append_row=output_file is not None),
        restored,
        step.instance_count,
        asked,
        make_setup,
        output_file,
        CodeGuard(step, run_dir, restored.fingerprint),
        cluster=cluster,
        node_recipe=recipe,
        compute=compute,
        settings=_reported_settings(step, settings),
        monitor_interval_s=float(args.resource_monitor_interval),
        isolate_failures=isolation,
    )
    try:
        outcome = run_planned(planned, run_dir, options, started)
    finally:
        if cluster is not None:
            cluster.close()
    if args.copy_logs_to_parent:
        copy_logs_to_parent(layout, run_dir)
    return outcome


def _reported_settings(step: ParallelStep, settings: dict[str, str]) -> dict[str, Any]:
    """A YAML step's own settings for job_result.json (run_planned adds the resolved
    limits and worker counts)."""
    args = step.runtime_args
    return {
        "mini_batch_size": (
            args.mini_batch_size or (step.mini_batch_size.raw if step.mini_batch_size else None)
        ),
        "partition_keys": list(step.partition_keys) if step.partition_keys else None,
        "logging_level": args.logging_level or step.logging_level,
        "task.code": str(step.task.code),
        **settings,
    }


def _worker_setup(
    step: ParallelStep,
    layout: StepLayout,
    plan: BatchPlan,
    output_file: Path | None,
    csv_options: dict,  # type: ignore[type-arg]
    gpus: tuple[str, ...],
    max_tasks: int | None,
    max_memory: int | None,
    region: _core.DispatchRegion,
    workers_per_node: int,
    nodes_share_gpus: bool = True,
) -> WorkerSetup:
    """A YAML step's WorkerSetup, in the driver or on a remote node (node_setup: its GPUs
    are its own, ``nodes_share_gpus=False``)."""
    args = step.runtime_args
    return WorkerSetup(
        region=region,
        plan=plan,
        layout=layout,
        code_dir=step.task.code,
        entry_script=step.task.entry_script,
        argv=step.task.argv,
        environment=dict(step.environment_variables),
        append_row=output_file is not None,
        csv_options=csv_options,
        logging_level=args.logging_level or step.logging_level,
        output_dir=(output_file.parent if output_file else layout.outputs_dir),
        driver_pid=os.getpid(),
        max_tasks=max_tasks,
        max_memory_bytes=max_memory,
        gpus=gpus,
        workers_per_node=workers_per_node,
        nodes_share_gpus=nodes_share_gpus,
        profiling_module=args.profiling_module,
    )


@dataclass(frozen=True)
class NodeRecipe:
    """What a remote node (executors/dask_node.py) needs to rebuild a YAML step's
    WorkerSetup: picklable (the plan, C++, is not: the node plans again and must find the
    same number of mini-batches and items)."""

    step: ParallelStep
    run_dir: Path
    max_tasks: int | None
    max_memory_bytes: int | None
    n_batches: int
    n_items: int


def node_setup(
    recipe: NodeRecipe, region: _core.DispatchRegion, workers_per_node: int
) -> WorkerSetup:
    """On a node: the step planned again from the shared input, its WorkerSetup. Raises
    ValueError when the node sees another input than the driver did."""
    step = recipe.step
    layout = StepLayout(recipe.run_dir / step.name)
    plan = _plan(step)
    if (plan.n_batches, plan.n_items) != (recipe.n_batches, recipe.n_items):
        raise ValueError(
            f"this node sees {plan.n_items} input items in {plan.n_batches} "
            f"mini-batches, the driver {recipe.n_items} in {recipe.n_batches}: "
            "the input folder is not the same on every node"
        )
    return _worker_setup(
        step,
        layout,
        plan,
        append_row_target(step, layout),
        _csv_options(step),
        tuple(visible_gpus()),
        recipe.max_tasks,
        recipe.max_memory_bytes,
        region,
        workers_per_node,
        nodes_share_gpus=False,
    )  # this machine is one node: GPUs by rank


@dataclass(frozen=True)
class PlannedStep:
    """A parallel step reduced to what the runtime runs, however it was described: a YAML
    step (run_parallel_step) or a Python callable (parajob.map_batches). Its layout exists;
    its journal start (``restored``) is decided.

    ``make_setup(region, workers_per_node)`` builds the WorkerSetup once the region exists.
    ``on_accepted`` (optional) is called by the driver's thread with each checkpoint's
    batches once they are durable (journalled): a streaming reader's feed.
    """

    name: str
    layout: StepLayout
    plan: BatchPlan
    limits: Limits
    restored: Restored
    instance_count: int
    workers_per_node: int  # asked for; worker_counts() caps it
    make_setup: Callable[[_core.DispatchRegion, int], WorkerSetup]
    output_file: Path | None
    code_guard: CodeGuard | None = None  # None: no task.code folder to watch
    on_accepted: Callable[[Accepted], None] | None = None
    # On a Dask cluster (executors/dask.py): the connected cluster, and what its nodes
    # rebuild the step from. None: this machine.
    cluster: Cluster | None = None
    node_recipe: NodeRecipe | None = None
    compute: str | None = None  # the step's compute name, for the simulated-nodes note
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # its own: job_result.json
    monitor_interval_s: float = 0.0  # --resource_monitor_interval; 0: no resource monitor
    isolate_failures: int = 0  # --isolate_failures: items quarantined per mini-batch; 0: off


def run_planned(step: PlannedStep, run_dir: Path, options: RunOptions, started: float) -> Outcome:
    """Fork the workers, drive the step to its end, merge its output, write job_result.txt.
    Blocks until every worker has exited; may be called from any thread (the caller's
    others must hold no lock a forked child needs: docs/design.md §7.1)."""
    layout, plan, restored, output_file = step.layout, step.plan, step.restored, step.output_file
    code_guard = step.code_guard
    settings = {
        **step.settings,
        "compute": step.compute or "local",
        "instance_count": step.instance_count,
        "max_concurrency_per_instance": step.workers_per_node,
        "total_batches": plan.n_batches,
        "total_items": plan.n_items,
        "isolate_failures": step.isolate_failures,  # resolved: the CLI's over the YAML's
    }
    if plan.n_batches == 0:
        if restored.start is not None:  # so a later --resume compares against this input
            JournalWriter(journal_path(layout.root), layout.spool_dir, restored.start).close()
        return _finish_empty(step.name, layout, output_file, started, plan, options, settings)
    limits = step.limits
    extra_slots = 0
    if options.serial:  # one worker, in this thread (executors/serial.py)
        # Imported here: a forking run never needs it (nor its bdb, before the first fork).
        from parajob.executors.serial import SerialExecutor, serial_limits

        instances, workers_per_node, limits = 1, 1, serial_limits(limits)
        notify_fd = -1  # nothing to wake: the engine and the worker take turns
    else:
        if step.cluster is not None:
            instances, workers_per_node = step.cluster.counts(step.workers_per_node, plan.n_batches)
            extra_slots = instances  # one virtual slot per node (executors/dask.py)
        else:
            # With isolation a failing mini-batch becomes two that can run at once.
            runnable = plan.n_batches * (2 if step.isolate_failures else 1)
            instances, workers_per_node = worker_counts(
                step.instance_count, step.workers_per_node, runnable
            )
            if step.instance_count > 1:
                terminal.echo(
                    simulated_nodes_note(step.name, step.instance_count, step.compute), err=True
                )
                cores = default_concurrency()
                if instances * workers_per_node > cores:
                    terminal.echo(
                        f"parajob: warning: step {step.name}: {instances} simulated "
                        f"node(s) x {workers_per_node} workers = "
                        f"{instances * workers_per_node} processes on {cores} "
                        "core(s): they oversubscribe this machine",
                        err=True,
                    )
        # High: workers inherit it, and user code there may write to or dup2 over low fds.
        notify_fd = fd_guard.move_high(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
    settings.update(
        executor="serial" if options.serial else "local" if step.cluster is None else "dask",
        nodes=instances,
        workers_per_node=workers_per_node,
        limits=asdict(limits),
    )
    if step.cluster is not None:
        settings["scheduler"] = step.cluster.address
    plan, bisection, restored = _isolation(step, restored)
    region = _core.DispatchRegion(
        plan.n_batches + (bisection.table.capacity if bisection else 0),
        instances * workers_per_node + extra_slots,
        notify_fd,
    )
    setup = dataclasses.replace(step.make_setup(region, workers_per_node), plan=plan)
    attempt_log = AttemptLog(layout)
    progress = Progress(
        layout,
        step.name,
        plan.n_batches,
        quiet=options.quiet,
        on_progress=options.on_progress,
        total_items=plan.n_items,
    )
    journal = JournalWriter(
        journal_path(layout.root), layout.spool_dir, restored.start, on_checkpoint=step.on_accepted
    )
    if step.cluster is not None:  # no monitor there: the note (if any) comes first
        start_monitor(layout, step.monitor_interval_s, instances, run_dir, on_cluster=True)

    def monitor() -> Monitor | None:  # called by the engine once its first workers run
        return start_monitor(layout, step.monitor_interval_s, instances, run_dir)

    engine: Engine | None = None
    try:
        first = _next_process_id(layout)
        executor: Executor
        if options.serial:
            executor = SerialExecutor(
                setup,
                limits,
                first,
                quiet=options.quiet,
                host_interrupts=not options.handle_signals,
            )
        elif step.cluster is not None:
            if step.node_recipe is None:
                raise SpecError(
                    [
                        Diagnostic(
                            "parajob",
                            None,
                            None,
                            f"jobs.{step.name}",
                            "this step cannot run on a Dask cluster (only "
                            "YAML parallel steps can, for now)",
                        )
                    ]
                )
            executor = step.cluster.executor(
                region,
                notify_fd,
                step.node_recipe,
                layout,
                limits,
                instances,
                workers_per_node,
                first,
            )
        else:
            executor = LocalExecutor(setup, notify_fd, first_process=first)
        engine = Engine(
            executor,
            region,
            plan,
            layout,
            instances,
            workers_per_node,
            limits,
            attempt_log,
            progress,
            journal,
            restored.accepted,
            before_replacement=code_guard,
            options=options,
            monitor=monitor if step.cluster is None else None,
            isolation=bisection,
        )
        result = engine.run()
    finally:
        if engine is not None and engine.monitor is not None:
            engine.monitor.close()
        log_error = _close_logs(
            [
                ("the journal", journal.close),
                (layout.processed_csv.name, attempt_log.close),
                ("the progress overview", progress.close),
            ]
        )
    if result.rejected_by is not None:  # the import check failed: nothing ran
        raise _rejected(step.name, layout, result.rejected_by, fresh=not options.resume)
    stop_reason, write_error = result.stop_reason, None
    # Once more at the end: a replacement that passed the check may have imported later.
    if (
        code_guard is not None
        and not result.interrupted
        and code_guard.asked
        and code_guard() not in (None, stop_reason)
    ):
        stop_reason = "; ".join(r for r in (stop_reason, code_guard.reason) if r)
    code_changed = code_guard is not None and code_guard.reason is not None
    if output_file is not None and not result.interrupted and not code_changed:
        try:
            # A resumed step keeps an output that already holds exactly these rows:
            # rewriting it would give it a new mtime, and a later step reading it would
            # see it "changed".
            pieces = (bisection.table, bisection.unsettled()) if bisection is not None else None
            if not (options.resume and _output_is_current(region, layout, output_file, pieces)):
                write_error = _write_output(
                    output_file,
                    lambda: merge_output(region, layout, output_file, pieces),
                    run_dir,
                )
        except CorruptRecord as exc:  # nothing written; resume re-checks and re-runs it
            stop_reason = (
                f"the output was not written: {exc}\n{plan.describe(exc.batch)}\n"
                f"`parajob run --resume {run_dir}` runs that mini-batch again"
            )

    tally = result.tally
    succeeded = stop_reason is None and tally.finished and write_error is None and log_error is None
    reason = "; ".join(r for r in (stop_reason, write_error, log_error) if r) or (
        "all mini-batches processed" if succeeded else "stopped"
    )
    seconds = time.monotonic() - started
    outcome = Outcome(
        step.name,
        succeeded,
        reason,
        tally,
        output_file,
        layout.logs,
        result.first_failure,
        seconds,
        result.interrupted,
        result.cancelled,
        result.failures,
        result.hosts,
        settings,
        time.time() - seconds,
        quarantined=result.quarantined,
    )
    if bisection is not None:
        write_quarantine(layout, step.name, result.quarantined)
    write_job_result(layout, outcome)
    return outcome


def isolate_failures(step: ParallelStep, options: RunOptions, on_cluster: bool) -> int:
    """The step's --isolate_failures: the run's (--isolate-failures, parajob.run) over the
    program argument's. SpecError on a Dask cluster, which cannot run sub-batches yet."""
    n = options.isolate_failures
    if n is None:
        n = step.runtime_args.isolate_failures
    if n and on_cluster:
        raise _step_error(
            step,
            f"--isolate_failures {n} cannot be used on a Dask cluster yet",
            "run this step on this machine (drop its --compute mapping), or leave "
            "--isolate_failures out",
        )
    return n


def _step_error(step: ParallelStep | CommandStep, message: str, hint: str) -> SpecError:
    """Bad input about a whole step, placed at its line of the pipeline."""
    return SpecError(
        [Diagnostic(str(step.file), step.line, None, f"jobs.{step.name}", message, hint)]
    )


def _skipped(
    step: ParallelStep, options: RunOptions, on_cluster: bool
) -> list[tuple[int, int, str]]:
    """The rows of --skip-items for this step (none without it)."""
    if options.skip_items is None:
        return []
    rows = read_skip_list(options.skip_items).get(step.name, [])
    if rows and on_cluster:
        raise SpecError(
            [
                Diagnostic(
                    str(options.skip_items),
                    None,
                    None,
                    f"jobs.{step.name}",
                    "--skip-items cannot be used for a step on a Dask cluster yet",
                    "run this step on this machine (drop its --compute mapping)",
                )
            ]
        )
    return rows


def _isolation(
    step: PlannedStep, restored: Restored
) -> tuple[BatchPlan, Bisection | None, Restored]:
    """With --isolate_failures: the plan that also answers for sub-batches and the
    bisection's bookkeeping, sized for the journal's pieces too. Without: the plan as it
    is, and a resume drops journalled pieces (their mini-batches run whole again)."""
    plan, kept = step.plan, restored.accepted
    pieces = kept.pieces()
    if not step.isolate_failures:
        if len(pieces) and kept.stop is not None:
            terminal.echo(
                f"parajob: warning: step {step.name}: {len({*pieces[:, 1].tolist()})} "
                "mini-batch(es) were being bisected (--isolate_failures); without it they "
                "run whole again",
                err=True,
            )
            restored = dataclasses.replace(restored, accepted=kept.select(kept.stop == 0))
        return plan, None, restored
    largest = max(1, plan.n_items)  # a bound on a mini-batch's size: only its log2 counts
    capacity = capacity_for(plan.n_batches, step.isolate_failures, largest)
    if len(pieces):
        capacity += int(pieces[:, 0].max()) + 1 - plan.n_batches
    isolating = IsolatingPlan(plan, PieceTable(plan.n_batches, capacity))
    return isolating, Bisection(isolating, step.isolate_failures), restored


class ScriptRejected(Exception):
    """The first workers of a step could not import or bind its entry script (the import
    check of `parajob run`, runtime/preflight.py): what the probe would have said."""

    def __init__(self, step: str, probe: ProbeResult) -> None:
        super().__init__(f"step {step}: {probe.problem}")
        self.step = step
        self.probe = probe


def _rejected(step: str, layout: StepLayout, process: int, fresh: bool) -> ScriptRejected:
    """The worker's record as a ScriptRejected; a step folder this run made goes (a
    refused run leaves nothing behind, as when the probe refused it)."""
    try:
        record = json.loads(layout.script_check(process).read_text(encoding="utf-8"))
        probe = probe_result(record)
    except (OSError, ValueError, KeyError):
        probe = ProbeResult(False, "the entry script could not be imported")
    if fresh:
        shutil.rmtree(layout.root, ignore_errors=True)
    return ScriptRejected(step, probe)


def start_monitor(
    layout: StepLayout, interval_s: float, nodes: int, run_dir: Path, on_cluster: bool = False
) -> Monitor | None:
    """The step's resource monitor, or None at interval 0 or when it cannot start (psutil
    missing, logs/sys/perf not writable): a warning then, never a failed job.
    on_cluster: the nodes are other machines; this driver's psutil would sample its own
    machine under their names (and read a local process with a remote worker's pid), so
    there is no monitor, and a note says so."""
    if interval_s <= 0:
        return None
    if on_cluster:
        terminal.echo(
            f"parajob: note: --resource_monitor_interval {interval_s:g}: not "
            f"sampled on Dask cluster nodes yet (no logs/sys/perf for step "
            f"{layout.root.name})",
            err=True,
        )
        return None
    try:
        return Monitor(layout.logs, interval_s, nodes, run_dir)
    except (ImportError, OSError) as exc:
        terminal.echo(
            f"parajob: warning: --resource_monitor_interval {interval_s:g}: the "
            f"resource monitor is off ({exc})",
            err=True,
        )
        return None


def step_limits(step: ParallelStep, append_row: bool) -> Limits:
    """The limits of docs/contract.md §4.4 for a step, from its fields and its program arguments."""
    args = step.runtime_args
    run_timeout = float(args.run_invocation_timeout or step.retry_settings.timeout)
    return Limits(
        max_retries=step.retry_settings.max_retries,
        run_timeout_s=run_timeout,
        load_timeout_s=float(args.task_overhead_timeout),
        init_timeout_s=float(args.first_task_creation_timeout),
        first_task_creation_timeout_s=float(args.first_task_creation_timeout),
        progress_update_timeout_s=float(args.progress_timeout(run_timeout)),
        # Program arguments win over the YAML fields (Azure puts them last).
        error_threshold=(
            args.error_threshold if args.error_threshold is not None else step.error_threshold
        ),
        mini_batch_error_threshold=(
            args.allowed_failed_count
            if args.allowed_failed_count is not None
            else step.mini_batch_error_threshold
        ),
        allowed_failed_percent=float(args.allowed_failed_percent),
        append_row=append_row,
    )


@dataclass(frozen=True)
class Restored:
    """What a step starts from: the journalled batches it keeps, and the bytes to start
    its journal with (None: append to the journal as it is)."""

    accepted: Accepted
    start: bytes | None
    fingerprint: RunFingerprint  # what this step runs on now (its code is watched)


def step_settings(step: ParallelStep, output_file: Path | None, run_dir: Path) -> dict[str, str]:
    """The step settings a run's rows depend on, by field label below jobs.<step>: what
    run() sees (its argv, its environment variables, which script) and where rows go. CSV
    options live in a file under task.code (covered by the code hash); logging_level
    changes no row. The append_row target is kept relative to the run folder, so that a
    moved run folder still resumes."""
    settings = {
        "task.program_arguments": json.dumps(list(step.task.argv)),
        "task.entry_script": step.task.entry_script,
        "task.append_row_to": "",
    }
    for name, value in step.environment_variables.items():
        settings[f"environment_variables.{name}"] = str(value)
    if output_file is not None:
        try:
            where = output_file.resolve().relative_to(run_dir.resolve()).as_posix()
        except ValueError:  # an output path outside the run folder
            where = str(output_file.resolve())
        settings["task.append_row_to"] = f"{step.task.append_row_to} -> {where}"
    return settings


class CodeGuard:
    """The driver's check before it forks a replacement worker (which imports task.code
    from disk again), and, when it forked one, once more before the output is merged: a
    replacement that passed the check may still have imported after an edit. Calling it
    gives None while the code is the one the step started with, else the reason the job
    stops; ``reason`` keeps that reason (then no output is written: its rows could mix two
    codes). A run without replacements is not checked at the end: its workers imported
    the code as they started, and code that writes into its own folder stays usable."""

    def __init__(self, step: ParallelStep, run_dir: Path, start: RunFingerprint) -> None:
        self._watch = CodeWatch(step.task.code, run_dir, start.code)
        self._code, self._run_dir = step.task.code, run_dir
        self.reason: str | None = None
        self.asked = 0  # replacements checked

    def __call__(self) -> str | None:
        self.asked += 1
        if self.reason is None:
            change = self._watch.changed()
            if change is not None:
                self.reason = (
                    f"task.code file {change} while the job ran ({self._code}): "
                    "workers started after the edit would run other code, so no "
                    "output was written; finish with "
                    f"`parajob run --resume {self._run_dir} --rerun-changed`"
                )
        return self.reason


def _restored_batches(
    step: ParallelStep,
    layout: StepLayout,
    plan: BatchPlan,
    run_dir: Path,
    options: RunOptions,
    settings: dict[str, str],
) -> Restored:
    """On resume, the batches the journal says were accepted, if the input and the code are
    those the run started with (else SpecError, or with rerun_changed only the batches
    whose digest is unchanged); on a fresh run, check the folder is new."""
    path = journal_path(layout.root)
    if not options.resume:
        check_step_folder_fresh(step, run_dir)
    now = _fingerprint(step, plan, run_dir, settings)
    journal = read_journal(path) if options.resume else None
    if journal is None:  # fresh, or the run died before its journal was started
        return Restored(
            Accepted.none(), journal_start(now.to_bytes(), plan.n_batches, plan.n_items), now
        )
    change = _change(step, plan, path, journal.fingerprint, now)
    if change is None:
        return Restored(intact_only(layout, journal.accepted), None, now)
    if not options.rerun_changed:
        raise SpecError(
            [
                Diagnostic(
                    str(path),
                    None,
                    None,
                    f"jobs.{step.name}",
                    change.message,
                    f"`parajob run --resume {run_dir} --rerun-changed` runs "
                    "again what changed (every mini-batch after a code or "
                    "settings change) and keeps the rest; or start a new run",
                )
            ]
        )
    then = RunFingerprint.from_bytes(journal.fingerprint) if journal.fingerprint else None
    kept = intact_only(
        layout, _kept(journal.accepted, then.unchanged_batches(now) if then else None)
    )
    return Restored(kept, journal_start(now.to_bytes(), plan.n_batches, plan.n_items, kept), now)


def check_step_folder_fresh(step: ParallelStep | CommandStep, run_dir: Path) -> None:
    """A new run's step folder holds nothing yet (SpecError otherwise: the run folder is an
    earlier run's, which only a resume may continue). ``inputs/``: the download copies the
    runner makes for the step just before it runs (docs/contract.md §1.3)."""
    root = run_dir / step.name
    if root.exists() and any(p.name != "inputs" for p in root.iterdir()):
        raise _step_error(
            step,
            f"the run folder already holds step {step.name!r}: {root}",
            "resume it with `parajob run --resume RUN_DIR` "
            "(parajob.run(run_dir=..., resume=True)), or choose another --run-dir (run_dir=)",
        )


def _fingerprint(
    step: ParallelStep, plan: BatchPlan, run_dir: Path, settings: dict[str, str]
) -> RunFingerprint:
    try:
        return RunFingerprint.of(plan, step.task.code, run_dir, settings)
    except OSError as exc:
        raise SpecError(
            [
                Diagnostic(
                    str(exc.filename or step.task.code),
                    None,
                    None,
                    f"jobs.{step.name}.task.code",
                    f"cannot read {exc.filename}: {exc.strerror}",
                )
            ]
        ) from exc


def _change(
    step: ParallelStep, plan: BatchPlan, path: Path, stored: bytes | None, now: RunFingerprint
) -> Change | None:
    """The first difference between the journal's fingerprint and now (None: none)."""
    if stored is None:
        return Change(
            "the run was started by an older parajob that did not record what its "
            "input and code were, so it cannot be resumed safely",
            plan.n_batches,
        )
    try:
        then = RunFingerprint.from_bytes(stored)
    except FingerprintError as exc:
        return Change(f"the journal is damaged ({exc})", plan.n_batches)
    return first_change(then, now, plan, step.task.code, step.name)


def _kept(accepted: Accepted, unchanged: np.ndarray | None) -> Accepted:
    """The accepted batches whose digest is unchanged (none when unknown)."""
    if unchanged is None or not len(accepted):
        return Accepted.none()
    batch = accepted.roots()  # a sub-batch is kept with its mini-batch
    keep = np.zeros(len(batch), dtype=bool)
    inside = batch < len(unchanged)
    keep[inside] = unchanged[batch[inside]]
    if accepted.stop is not None:
        # A sub-batch's id is a slot after the plan's mini-batches: one that the changed
        # plan's mini-batches now reach is dropped (its mini-batch runs whole again).
        keep &= ~((accepted.stop > 0) & (accepted.batch.astype(np.int64) < len(unchanged)))
    return accepted.select(keep)


def intact_only(layout: StepLayout, accepted: Accepted) -> Accepted:
    """Journalled batches whose spool record still validates (CRC32); the others run
    again rather than fail the merge at the end."""
    if not len(accepted):
        return accepted
    checker = _spool_checker(layout, accepted.process)
    intact = checker.check(accepted.batch, accepted.process, accepted.offset, accepted.length)
    checker.close()
    if intact.all():
        return accepted
    terminal.echo(
        f"parajob: warning: {int((~intact).sum())} journalled mini-batch(es) have a "
        f"result record that does not validate in {layout.spool_dir}; they run again",
        err=True,
    )
    return accepted.select(intact)


def _spool_checker(layout: StepLayout, processes: np.ndarray) -> _core.SpoolChecker:
    checker = _core.SpoolChecker()
    for p in shm_view.distinct_processes(processes):  # not np.unique: see there
        checker.add_spool(p, str(spool_path(layout.spool_dir, p)))
    return checker


class CorruptRecord(Exception):
    """An accepted mini-batch's spool record no longer validates at the merge."""

    def __init__(self, batch: int, spool: Path) -> None:
        super().__init__(
            f"the result record of mini-batch {batch} in {spool} does not "
            "validate (CRC32): the spool was modified after it was accepted"
        )
        self.batch = batch


def _next_process_id(layout: StepLayout) -> int:
    """Process ids of a resumed run start past those of earlier runs (their spools stay)."""
    ids = [int(p.stem.removeprefix("process")) for p in layout.spool_dir.glob("process*.spool")]
    return max(ids, default=0) + 1


def merge_output(
    region: _core.DispatchRegion,
    layout: StepLayout,
    target: Path,
    pieces: tuple[PieceTable, set[int]] | None = None,
) -> None:
    """Write every DONE mini-batch's rows once, in mini-batch order; atomically.

    The copy runs in C++ (merge_records): in Python it cost ~2 us per mini-batch, 0.2 s
    for 100,000 one-file mini-batches. Every record is checked first (CRC32); raises
    CorruptRecord, with nothing written, for the first that does not validate.
    """
    write_atomically(target, lambda tmp: _merge_into(region, layout, tmp, pieces))


def _merge_into(
    region: _core.DispatchRegion,
    layout: StepLayout,
    path: Path,
    pieces: tuple[PieceTable, set[int]] | None,
) -> None:
    """pieces: with isolation, the piece table and the mini-batches still being bisected."""
    slots = shm_view.batch_slots(region)
    state, _attempt, process = shm_view.unpack_states(slots["word"])
    done = (state == int(_core.BatchState.DONE)).nonzero()[0]
    if pieces is not None:  # a mini-batch's accepted sub-batches take its place (isolation.py)
        done = merge_order(done, *pieces)
    n_processes = int(process.max()) + 1 if len(process) else 1
    checker = _spool_checker(layout, process[done])
    intact = checker.check(
        done.astype(np.uint32),
        process[done],
        slots["spool_offset"][done],
        slots["spool_length"][done],
    )
    checker.close()
    if not intact.all():
        first = int(done[(~intact).nonzero()[0][0]])
        raise CorruptRecord(first, spool_path(layout.spool_dir, int(process[first])))
    spools = [
        str(spool_path(layout.spool_dir, p)) if spool_path(layout.spool_dir, p).exists() else ""
        for p in range(n_processes)
    ]
    _core.merge_records(
        str(path),
        spools,
        done.astype(np.uint32),
        process[done],
        slots["spool_offset"][done],
        slots["spool_length"][done],
    )


def _output_is_current(
    region: _core.DispatchRegion,
    layout: StepLayout,
    target: Path,
    pieces: tuple[PieceTable, set[int]] | None,
) -> bool:
    """Whether target already holds exactly the merge of the DONE batches (resume only: a
    scratch merge in the step's own work folder, which this run holds, then a compare)."""
    if not target.is_file():
        return False
    scratch = layout.work_dir / "merge-check.partial"
    try:
        _merge_into(region, layout, scratch, pieces)
        return filecmp.cmp(scratch, target, shallow=False)
    finally:
        scratch.unlink(missing_ok=True)


def _write_output(target: Path, write: Callable[[], object], run_dir: Path) -> str | None:
    """Run ``write`` (an atomic write of target); the reason the job fails when it cannot
    (a full disk, a folder made read-only or removed while the job ran), else None.
    write_atomically has then removed its temporary file: nothing half-written remains."""
    try:
        write()
    except (OSError, RuntimeError) as exc:  # RuntimeError: the C++ merge's system_error
        if "is corrupt" in str(exc):  # a damaged spool, not the output's place: not ours here
            raise
        return (
            f"the output could not be written to {target}: {exc} (make room or fix the "
            f"folder, then `parajob run --resume {run_dir}` writes it without running "
            "the mini-batches again)"
        )
    return None


def _close_logs(closers: list[tuple[str, Callable[[], object]]]) -> str | None:
    """Close every log (each is tried, whatever the others do); the reason the job fails
    when one could not be written at the end (a full disk), else None."""
    failed = []
    for name, close in closers:
        try:
            close()
        except OSError as exc:
            failed.append(f"{name}: {exc.strerror or exc}")
    return f"the logs could not be completed ({'; '.join(failed)})" if failed else None


def _make_output_folders(step: ParallelStep, layout: StepLayout) -> None:
    """Output folders exist before workers start, as mounted outputs do on Azure (scripts
    write into ``--model_folder ${{outputs.x}}`` without creating it); a uri_file output's
    folder too. One that cannot be made is bad input (exit 2), before any worker starts;
    validation has checked the usual causes already (spec.output_places)."""
    for name, out in step.outputs.items():
        path = out.path or layout.outputs_dir / name
        folder = path.parent if out.type == "uri_file" else path
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            key = (
                f"outputs.{name}.path"
                if f"outputs.{name}.path" in step.locations
                else f"outputs.{name}"
            )
            file, line, col = step.where(key)
            raise SpecError(
                [
                    Diagnostic(
                        str(file),
                        line,
                        col,
                        f"jobs.{step.name}.{key}",
                        f"cannot create the output folder {folder}: {exc.strerror or exc}",
                        "give a path in a folder you can write to",
                    )
                ]
            ) from exc


def append_row_target(step: ParallelStep, layout: StepLayout) -> Path | None:
    """The append_row file: the uri_file output itself, or <folder>/<append_row_file_name>."""
    name = step.task.append_row_to
    if name is None:
        return None
    out = step.outputs[name]
    path = out.path or layout.outputs_dir / name
    if out.type == "uri_file":
        return path
    return path / step.runtime_args.append_row_file_name


def check_entry_script(step: ParallelStep) -> None:
    """Parse (not run) the entry script: a syntax error or no run() is bad input (exit 2)."""
    path = step.task.entry_path
    where = step.locations.get("task.entry_script", (None, None))

    def error(message: str, line: int | None = None, hint: str | None = None) -> SpecError:
        return SpecError([Diagnostic(str(path), line, None, "task.entry_script", message, hint)])

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except OSError as exc:
        raise SpecError(
            [
                Diagnostic(
                    str(step.file),
                    where[0],
                    where[1],
                    f"jobs.{step.name}.task.entry_script",
                    f"cannot read entry script {path}: {exc.strerror}",
                )
            ]
        ) from exc
    except SyntaxError as exc:
        raise error(f"syntax error: {exc.msg}", exc.lineno) from exc
    names = module_names(tree.body)
    if "run" not in names and "*" not in names:
        raise error(
            "defines no run(mini_batch) function",
            None,
            "add `def run(mini_batch):` returning a list or DataFrame of results",
        )


def _plan(step: ParallelStep) -> BatchPlan:
    data = step.data_input
    assert data.path is not None  # spec guarantees a path for data inputs
    line, col = step.locations.get("partition_keys", (step.line, None))
    keys_where = Where(str(step.file), line, col, f"jobs.{step.name}.partition_keys")
    try:  # file lists, tables (MLTable with read_*), partitions: parajob.data.plans
        return plan_input(
            data.path, data.type, step.mini_batch_size, step.partition_keys, keys_where
        )
    except TableInputError as exc:  # already placed: MLTable line, data file line, keys
        raise SpecError(exc.diagnostics) from exc
    except (InputDataError, ValueError) as exc:
        line, col = step.locations.get(f"inputs.{step.input_data}.path", (step.line, None))
        raise SpecError(
            [
                Diagnostic(
                    str(step.file),
                    line,
                    col,
                    f"jobs.{step.name}.inputs.{step.input_data}",
                    str(exc),
                )
            ]
        ) from exc


def _csv_options(step: ParallelStep) -> dict:  # type: ignore[type-arg]
    try:
        return load_csv_options(step.task.code)
    except ValueError as exc:
        raise SpecError(
            [Diagnostic(str(step.task.code), None, None, "task.code", str(exc))]
        ) from exc


def _finish_empty(
    name: str,
    layout: StepLayout,
    output_file: Path | None,
    started: float,
    plan: BatchPlan,
    options: RunOptions,
    settings: dict[str, Any],
) -> Outcome:
    """A plan of zero mini-batches (an empty folder, a table without rows) is a job that
    succeeds at once, with an empty append_row output (README, "What happens when...").
    Its progress is drawn once, final: an on_progress caller waits for ``final=True``."""
    progress = Progress(layout, name, 0, quiet=options.quiet, on_progress=options.on_progress)
    progress.update(Tally(0), lambda: 0, force=True)
    progress.close()
    error = None
    if output_file is not None:
        error = _write_output(
            output_file,
            lambda: write_atomically(output_file, lambda tmp: tmp.write_bytes(b"")),
            layout.root.parent,
        )
    what = "rows" if plan.loads_data else "files"
    seconds = time.monotonic() - started
    outcome = Outcome(
        name,
        error is None,
        error or f"the input has no {what}: 0 mini-batches, nothing to do",
        Tally(0),
        output_file,
        layout.logs,
        None,
        seconds,
        settings=settings,
        started_at=time.time() - seconds,
    )
    write_job_result(layout, outcome)
    return outcome
