"""`parajob show RUN_DIR`: a RunView as plain text (no colour, no control characters).

RunView --render()--> str   (the CLI prints it; tests read it)
"""

from __future__ import annotations

from typing import Any

from parajob.runtime.failures import error_line
from parajob.runtime.layout import node_name
from parajob.show.model import AttemptRow, RunView, StepView
from parajob.show.resources import NOT_YET

# The resolved settings shown first, as (label, key in settings.json's "limits").
LIMIT_LABELS = (
    ("max_retries", "max_retries"),
    ("run timeout (s)", "run_timeout_s"),
    ("task overhead timeout (s)", "load_timeout_s"),
    ("init timeout (s)", "init_timeout_s"),
    ("first task creation timeout (s)", "first_task_creation_timeout_s"),
    ("progress update timeout (s)", "progress_update_timeout_s"),
    ("error_threshold", "error_threshold"),
    ("mini_batch_error_threshold", "mini_batch_error_threshold"),
    ("allowed_failed_percent", "allowed_failed_percent"),
    ("append_row", "append_row"),
)


def render(run: RunView) -> str:
    lines = [
        f"run:       {run.run_dir}",
        f"status:    {run.status}" + (f" (driver pid {run.driver_pid})" if run.driver_pid else ""),
    ]
    if run.pipeline:
        lines.append(f"pipeline:  {run.pipeline}")
    if run.created:
        lines.append(f"created:   {run.created}")
    for step in run.steps:
        lines += ["", *_step(step)]
    return "\n".join(lines) + "\n"


def settings_rows(step: StepView) -> list[tuple[str, str]]:
    """The resolved settings as (label, value): shared with the HTML report."""
    s = step.settings
    if s is None:
        return []
    rows = [
        ("mini-batches", str(s.get("total_batches", "?"))),
        ("items", str(s.get("total_items", "?"))),
        ("instance_count", str(s.get("instance_count", "?"))),
        ("workers per node", str(s.get("workers_per_node", "?"))),
    ]
    limits: dict[str, Any] = s.get("limits", {})
    rows += [(label, _value(limits[key])) for label, key in LIMIT_LABELS if key in limits]
    if step.program_arguments:  # --resource_monitor_interval, --profiling_module, ...
        rows.append(("program_arguments", step.program_arguments))
    return rows


def _value(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _step(step: StepView) -> list[str]:
    out = [f"step {step.name} ({step.kind}): {step.status.upper()}"]
    if step.reason:
        out.append(f"  reason:          {step.reason}")
    if step.status == "starting" or (step.kind, step.status) == ("command", "running"):
        # nothing recorded yet but its folder (and a command's log)
        return [*out, f"  logs:            {step.logs}"]
    rows = settings_rows(step)
    if rows:
        out.append("  settings:")
        width = max(len(label) for label, _ in rows)
        out += [f"    {label:<{width}}  {value}" for label, value in rows]
    elif step.kind == "parallel":
        out.append("  settings:        (not recorded: a run of an older parajob)")
    if step.kind != "parallel":
        out.append(f"  elapsed:         {step.seconds:.2f} s")
        return out
    out += [
        f"  mini-batches:    {step.total_batches} total, {step.completed_batches} "
        f"completed, {step.failed_batches} failed",
        f"  items:           {step.items_in} in, {step.items_out} returned, "
        f"{step.failed_items} failed",
        f"  failed attempts: {step.failed_attempts}",
        f"  elapsed:         {step.seconds:.2f} s",
    ]
    for i, host in enumerate(step.hosts if step.on_cluster else []):  # as job_result.txt
        where = f" (Dask worker {host['address']})" if host.get("address") else ""
        out.append(
            f"  {'hosts:' if i == 0 else '':<17}"
            f"{node_name(int(host.get('node', i)))} {host.get('host', '?')}{where}"
        )
    rate = step.throughput
    if rate is not None:
        out.append(
            f"  throughput:      {rate[0]:.1f} mini-batches/s, {rate[1]:.1f} items/s "
            f"(over {_span(rate[2])} of attempts)"
        )
    slowest = step.slowest()
    if slowest:
        out.append("  slowest mini-batches:")
        out += _attempts(slowest)
    if step.failures:
        out.append("  failed mini-batches:")
        for f in step.failures:
            what = ": ".join(x for x in (f.get("error_type", ""), f.get("message", "")) if x)
            out.append(
                f"    mini-batch {f.get('batch')}: {f.get('attempts')} attempt(s), "
                f"last {f.get('status')}" + (f": {what}" if what else "")
            )
            inputs = str(f.get("inputs", "")).splitlines()[1:4]
            out += [f"      {line.strip()}" for line in inputs]
    if step.quarantined:
        out.append(f"  quarantined items ({len(step.quarantined)}, logs/quarantine.csv):")
        for q in step.quarantined[:10]:
            out.append(
                f"    mini-batch {q.get('mini_batch')} item {q.get('item_index')}: "
                f"{q.get('item')}: {q.get('status')}: {error_line(str(q.get('error', '')))}"
            )
        if len(step.quarantined) > 10:
            out.append(f"    ... and {len(step.quarantined) - 10} more")
    if step.first_failure:  # job_result.txt's block: also init()'s, a crash's trace
        out.append("  first failure:")
        out += [f"    {line}" for line in step.first_failure.splitlines()]
    failed = step.failed_attempt_rows()
    if failed:
        out.append("  failed attempts (with their logs):")
        out += _attempts(failed[:20])
        if len(failed) > 20:
            out.append(f"    ... {len(failed) - 20} more in {step.logs / 'job_error.txt'}")
    out.append(f"  resources:       {_resources(step)}")
    out.append(f"  logs:            {step.logs}")
    return out


def _resources(step: StepView) -> str:
    """One line on the monitor's samples (the HTML report draws them)."""
    res = step.resources
    if res.empty and step.on_cluster:
        return "no samples in logs/sys/perf/ (not sampled on Dask cluster nodes yet)"
    if res.empty and res.monitored:
        return f"no samples in logs/sys/perf/ yet: {NOT_YET}"
    if res.empty:
        return "no samples in logs/sys/perf/ (--resource_monitor_interval 0: off)"
    peaks = [f"peak machine CPU {max(s.peak for s in res.cpu):.0f} %"] if res.cpu else []
    if res.rss:
        peaks.append(f"peak worker RSS {max(s.peak for s in res.rss) / 2**20:.0f} MiB")
    return f"{res.samples} sample(s) in logs/sys/perf/" + (
        f" ({', '.join(peaks)})" if peaks else ""
    )


def _attempts(rows: list[AttemptRow]) -> list[str]:
    out = []
    for r in rows:
        out.append(
            f"    mini-batch {r.batch} attempt {r.attempt} on {r.worker}: {r.status}, "
            f"{r.seconds:.3f} s, {r.items_in} items"
        )
        out += [f"      {p}" for p in r.logs]
    return out


def _span(seconds: float) -> str:
    """A span of attempts: milliseconds when under 0.01 s (a fast run's "0.00 s" says
    nothing)."""
    return f"{seconds:.2f} s" if seconds >= 0.01 else f"{seconds * 1e3:.2f} ms"
