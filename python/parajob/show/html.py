"""`parajob show --html RUN_DIR`: a RunView as one self-contained HTML file.

    RunView --render()--> str --write()--> FILE (atomically)

Self-contained by construction: the charts are SVG drawn here, the CSS is inline, there is
no JavaScript, no font, image or script from anywhere else (so no network request and no
console error in a browser, and it opens from a mail attachment or a CI artefact). Every
text from the run (file names, error messages) goes through html.escape.

Invariants the tests read: the timeline has one ``<rect class="attempt">`` per attempt in
the step's timeline file (up to MAX_BARS), with data-batch, data-attempt, data-status and
data-worker attributes; the sections have ids (timeline-<step>, throughput-<step>,
failures-<step>, settings-<step>, resources-<step>); the resource charts (show/resources.py)
are ``<svg class="resource-chart" data-chart="cpu|memory|rss|gpu">`` with one
``class="series"`` line per node, worker process or GPU.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from parajob.runtime import timeline
from parajob.runtime.spool import write_atomically
from parajob.show import resources
from parajob.show.model import RunView, StepView
from parajob.show.text import settings_rows

MAX_BARS = 20000  # attempts drawn per step: a browser stays responsive
BUCKETS = 40  # throughput samples over the step's span, at most (4+ attempts each)
WIDTH, LANE, LEFT = 960, 18, 150  # SVG geometry (px): chart width, lane height, label column

COLOURS = {
    "succeeded": "#2e7d32",
    "short_return": "#f9a825",
    "raised": "#c62828",
    "wrong_return_type": "#ad1457",
    "timed_out": "#6a1b9a",
    "crashed": "#212121",
    "corrupt_record": "#6d4c41",
    "other": "#757575",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .2em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
pre { margin: 0; white-space: pre-wrap; font-size: .85em; }
.status-succeeded { color: #2e7d32; } .status-failed, .status-stopped { color: #c62828; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: .9em; height: .9em; margin-right: .3em; }
.series-legend { font-size: .8em; margin-top: 0; }
.note { color: #666; }
svg text { font-size: 11px; fill: #333; }
"""


def write(run: RunView, target: Path) -> None:
    data = render(run).encode("utf-8", "backslashreplace")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, lambda tmp: tmp.write_bytes(data))


def render(run: RunView) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>parajob run {e(run.run_dir.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>parajob run: {e(str(run.run_dir))}</h1>",
        "<table>",
        _tr("status", f'<span class="status-{e(run.status)}">{e(run.status)}</span>', raw=True),
    ]
    if run.pipeline:
        parts.append(_tr("pipeline", run.pipeline))
    if run.created:
        parts.append(_tr("created", run.created))
    parts.append("</table>")
    parts.append(_legend(run))
    for step in run.steps:
        parts += _step(step)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _tr(label: str, value: str, raw: bool = False) -> str:
    return f"<tr><th>{html.escape(label)}</th><td>{value if raw else html.escape(value)}</td></tr>"


def _legend(run: RunView) -> str:
    """The colours of the statuses the run's attempts ended with."""
    codes = {int(c) for step in run.steps for c in np.unique(step.attempts["status"])}
    shown = [timeline.STATUSES[min(c, len(timeline.STATUSES) - 1)] for c in sorted(codes)]
    items = "".join(
        f'<span><i style="background:{COLOURS[s]}"></i>{html.escape(s)}</span>' for s in shown
    )
    return f'<p class="legend">{items}</p>'


def _step(step: StepView) -> list[str]:
    e, sid = html.escape, html.escape(step.name, quote=True)
    out = [
        f'<h2 id="step-{sid}">step {e(step.name)} ({e(step.kind)}): '
        f'<span class="status-{e(step.status)}">{e(step.status)}</span></h2>',
        "<table>",
    ]
    if step.reason:
        out.append(_tr("reason", step.reason))
    if step.kind == "parallel":
        out += [
            _tr(
                "mini-batches",
                f"{step.total_batches} total, {step.completed_batches} "
                f"completed, {step.failed_batches} failed",
            ),
            _tr(
                "items",
                f"{step.items_in} in, {step.items_out} returned, {step.failed_items} failed",
            ),
            _tr("failed attempts", str(step.failed_attempts)),
        ]
        rate = step.throughput
        if rate is not None:
            out.append(_tr("throughput", f"{rate[0]:.1f} mini-batches/s, {rate[1]:.1f} items/s"))
    out += [_tr("elapsed", f"{step.seconds:.2f} s"), _tr("logs", str(step.logs)), "</table>"]
    if step.kind != "parallel":
        return out
    axis = _axis(step)
    out += [
        f'<h3 id="timeline-{sid}">Attempts per worker</h3>',
        _timeline(step, axis),
        f'<h3 id="throughput-{sid}">Throughput</h3>',
        _throughput(step, axis),
        f'<h3 id="resources-{sid}">Resources</h3>',
        resources.render(step.resources, axis, WIDTH, LEFT),
        f'<h3 id="failures-{sid}">Failures</h3>',
        _failures(step),
        f'<h3 id="settings-{sid}">Settings</h3>',
        _settings(step),
    ]
    return out


def _axis(step: StepView) -> tuple[int, int]:
    """(first, last) epoch ns shared by the timeline, throughput and resource charts, so
    that a dip in one lines up with the bars above it: the attempts' span and the
    monitor's samples' together (the first sample is taken before any attempt starts)."""
    a = step.attempts
    ends = [(int(a["start_ns"].min()), int(a["end_ns"].max()))] if len(a) else []
    sampled = step.resources.span()
    if sampled is not None:
        ends.append((int(sampled[0] * 1e9), int(sampled[1] * 1e9)))
    if not ends:
        return 0, 1
    return min(e[0] for e in ends), max(e[1] for e in ends)


def _timeline(step: StepView, axis: tuple[int, int]) -> str:
    a = step.attempts
    if not len(a):
        return (
            '<p class="note">No attempts recorded (a run of an older parajob, or none '
            "decided yet).</p>"
        )
    note = ""
    if len(a) > MAX_BARS:
        note = f'<p class="note">{len(a)} attempts: the first {MAX_BARS} are drawn.</p>'
        a = a[:MAX_BARS]
    lanes = sorted({step.worker_name(int(p)) for p in np.unique(a["process"]).tolist()})
    lane_of = {name: i for i, name in enumerate(lanes)}
    t0, t1 = axis
    span = max(t1 - t0, 1)
    scale = (WIDTH - LEFT - 10) / span
    height = LANE * len(lanes) + 24
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="attempts per worker">'
    ]
    for name, i in lane_of.items():
        parts.append(f'<text x="4" y="{i * LANE + 13}">{html.escape(name)}</text>')
    for r in a:
        process = int(r["process"])
        worker = step.worker_name(process)
        status = timeline.STATUSES[min(int(r["status"]), len(timeline.STATUSES) - 1)]
        x = LEFT + (int(r["start_ns"]) - t0) * scale
        w = max((int(r["end_ns"]) - int(r["start_ns"])) * scale, 1.0)
        y = lane_of[worker] * LANE + 2
        seconds = (int(r["end_ns"]) - int(r["start_ns"])) / 1e9
        tip = (
            f"mini-batch {int(r['batch'])} attempt {int(r['attempt'])} on {worker}: "
            f"{status}, {seconds:.3f} s, {int(r['items_in'])} items"
        )
        parts.append(
            f'<rect class="attempt" data-batch="{int(r["batch"])}" '
            f'data-attempt="{int(r["attempt"])}" data-status="{status}" '
            f'data-worker="{html.escape(worker, quote=True)}" x="{x:.2f}" y="{y}" '
            f'width="{w:.2f}" height="{LANE - 4}" fill="{COLOURS[status]}">'
            f"<title>{html.escape(tip)}</title></rect>"
        )
    parts.append(f'<text x="{LEFT}" y="{height - 6}">0 s</text>')
    parts.append(f'<text x="{WIDTH - 60}" y="{height - 6}">{span / 1e9:.2f} s</text>')
    parts.append("</svg>")
    return note + "".join(parts)


def _throughput(step: StepView, axis: tuple[int, int]) -> str:
    a = step.attempts
    ok = a[np.isin(a["status"], (0, 1))]
    if not len(ok):
        return '<p class="note">No accepted mini-batch yet.</p>'
    t0, t1 = axis  # the timeline's time axis, so that a dip lines up with the bars above it
    span = max(t1 - t0, 1)
    buckets = max(1, min(BUCKETS, len(ok) // 4))
    edges = np.linspace(t0, t1, buckets + 1)
    items, _ = np.histogram(ok["end_ns"], bins=edges, weights=ok["items_in"].astype(float))
    per_s = items / (span / 1e9 / buckets)
    top = float(per_s.max()) or 1.0
    h, plot = 160, WIDTH - LEFT - 10
    bar = plot / buckets
    parts = [
        f'<svg class="throughput" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{h + 24}" role="img" aria-label="items per second over time">',
        f'<text x="4" y="12">{top:.1f} items/s</text>',
        f'<text x="4" y="{h}">0</text>',
    ]
    for i, v in enumerate(per_s.tolist()):
        bh = v / top * (h - 10)
        parts.append(
            f'<rect class="bucket" x="{LEFT + i * bar:.2f}" y="{h - bh:.2f}" '
            f'width="{max(bar - 1, 1):.2f}" height="{bh:.2f}" fill="#1565c0">'
            f"<title>{v:.1f} items/s</title></rect>"
        )
    parts.append(f'<text x="{LEFT}" y="{h + 18}">0 s</text>')
    parts.append(f'<text x="{WIDTH - 60}" y="{h + 18}">{span / 1e9:.2f} s</text></svg>')
    return "".join(parts)


def _failures(step: StepView) -> str:
    e = html.escape
    rows = step.failed_attempt_rows()
    first = (
        f'<p>First failure (as in job_result.txt):</p><pre class="first-failure">'
        f"{e(step.first_failure)}</pre>"
        if step.first_failure
        else ""
    )
    if not rows and not step.failures:
        return first or '<p class="note">No failed attempt.</p>'
    out = [
        first,
        '<table class="failures"><tr><th>mini-batch</th><th>attempts</th><th>last status'
        "</th><th>error</th><th>inputs</th></tr>",
    ]
    for f in step.failures:
        error = ": ".join(str(x) for x in (f.get("error_type"), f.get("message")) if x)
        out.append(
            f"<tr><td>{e(str(f.get('batch')))}</td><td>{e(str(f.get('attempts')))}</td>"
            f"<td>{e(str(f.get('status')))}</td><td><pre>{e(error)}\n"
            f"{e(str(f.get('traceback', '')))}</pre></td>"
            f"<td><pre>{e(str(f.get('inputs', '')))}</pre></td></tr>"
        )
    out.append("</table>")
    if step.quarantined:  # --isolate_failures: the items that failed alone
        out.append(
            f"<p>Quarantined items ({len(step.quarantined)}, logs/quarantine.csv):</p>"
            '<table class="quarantined"><tr><th>mini-batch</th><th>item</th><th>path or row'
            "</th><th>status</th><th>error</th></tr>"
        )
        for q in step.quarantined[:500]:
            out.append(
                "<tr>"
                + "".join(
                    f"<td>{e(str(q.get(k, '')))}</td>"
                    for k in ("mini_batch", "item_index", "item", "status")
                )
                + f"<td><pre>{e(str(q.get('error', '')))}</pre></td></tr>"
            )
        out.append("</table>")
    if rows:
        out.append(
            '<table class="failed-attempts"><tr><th>mini-batch</th><th>attempt</th>'
            "<th>worker</th><th>status</th><th>seconds</th><th>logs</th></tr>"
        )
        for r in rows[:500]:
            logs = "<br>".join(e(str(p)) for p in r.logs)
            out.append(
                f"<tr><td>{r.batch}</td><td>{r.attempt}</td><td>{e(r.worker)}</td>"
                f"<td>{e(r.status)}</td><td>{r.seconds:.3f}</td><td>{logs}</td></tr>"
            )
        out.append("</table>")
    return "".join(out)


def _settings(step: StepView) -> str:
    rows = settings_rows(step)
    if not rows:
        return '<p class="note">Not recorded (a run of an older parajob).</p>'
    return "<table>" + "".join(_tr(label, value) for label, value in rows) + "</table>"
