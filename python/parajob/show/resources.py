"""The resource charts of `parajob show --html`: the monitor's CSVs, read and drawn as SVG.

    <step>/logs/sys/perf/<node>/machine.csv    (runtime/monitor.py COLUMNS)
                                processes.csv
                                gpu.csv         (only with a GPU)
        |  load(logs)                      read-only; torn or empty rows are skipped
        v
    Resources(machine CPU % / memory per node, RSS per worker process, GPU % per GPU)
        |  render(resources)               server-side SVG polylines, no JavaScript
        v
    the report's "Resources" section (show/html.py)

Invariants: nothing is written and nothing imported from psutil (the report may be made on
another machine, of a run still going: the CSVs' last line may be half written). Times are
the rows' wall-clock ``time`` column, not ``elapsed_s``: a resumed driver restarts
elapsed_s at 0 but appends to the same files. Each series is cut to MAX_POINTS points
(the largest value of each bucket, so that a peak is never smoothed away) and at most
MAX_SERIES worker processes are drawn (the largest peaks), so that a day-long run at
interval 1 still gives a report a browser opens at once.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from parajob.runtime.monitor import perf_dir

__all__ = ["MAX_POINTS", "MAX_SERIES", "NOT_YET", "Resources", "Series", "load", "render"]

MAX_POINTS = 600  # per series drawn
# The monitor is on (its files have their header) but has no row: the step is younger than
# one interval, or ended before (the default interval is 600 s, as on Azure).
NOT_YET = (
    "the step ended before the first sample (or has not reached it yet), taken "
    "--resource_monitor_interval seconds after the start (default 600; "
    "--resource_monitor_interval 1 samples every second)"
)
MAX_SERIES = 48  # worker processes drawn in the RSS chart
WIDTH, HEIGHT, LEFT = 960, 150, 150  # px, defaults; the report passes its timeline's
PALETTE = (
    "#1565c0",
    "#c62828",
    "#2e7d32",
    "#6a1b9a",
    "#ef6c00",
    "#00838f",
    "#ad1457",
    "#4e342e",
    "#558b2f",
    "#283593",
)


@dataclass
class Series:
    """One line: (epoch seconds, value) points, in time order."""

    label: str
    t: np.ndarray
    v: np.ndarray

    @property
    def peak(self) -> float:
        return float(self.v.max()) if len(self.v) else 0.0


@dataclass
class Resources:
    cpu: list[Series] = field(default_factory=list)  # machine CPU %, one per node
    memory: list[Series] = field(default_factory=list)  # machine memory used (bytes)
    memory_total: float = 0.0  # used + available, the largest seen
    rss: list[Series] = field(default_factory=list)  # one per worker process
    processes: int = 0  # worker processes sampled (all)
    gpu: list[Series] = field(default_factory=list)  # utilisation %, one per node/GPU
    samples: int = 0  # machine rows, all nodes
    monitored: bool = False  # the monitor ran (it makes logs/sys/perf/<node>/ at start)

    @property
    def empty(self) -> bool:
        return self.samples == 0 and not self.rss

    def span(self) -> tuple[float, float] | None:
        """(first, last) sample time, epoch seconds; None without samples."""
        series = [s for s in (*self.cpu, *self.memory, *self.rss, *self.gpu) if len(s.t)]
        if not series:
            return None
        return min(float(s.t.min()) for s in series), max(float(s.t.max()) for s in series)


def load(logs: Path) -> Resources:
    """The samples under ``logs``/sys/perf; an empty Resources when there are none."""
    res = Resources()
    root = perf_dir(logs)
    nodes = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    per_process: dict[str, list[tuple[float, float]]] = {}
    res.monitored = bool(nodes)
    for node in nodes:
        machine = _rows(node / "machine.csv")
        res.samples += len(machine)
        res.cpu.append(_series(node.name, machine, "cpu_percent"))
        res.memory.append(_series(node.name, machine, "memory_used_bytes"))
        for row in machine:
            total = _num(row.get("memory_used_bytes")) + _num(row.get("memory_available_bytes"))
            res.memory_total = max(res.memory_total, total)
        for row in _rows(node / "processes.csv"):
            t, rss = _time(row.get("time")), _num(row.get("rss_bytes"), -1.0)
            if t is None or rss < 0:
                continue
            label = f"{node.name}/{row.get('worker', '?')} (id {row.get('process', '?')})"
            per_process.setdefault(label, []).append((t, rss))
        by_gpu: dict[str, list[dict[str, str]]] = {}
        for row in _rows(node / "gpu.csv"):
            by_gpu.setdefault(f"{node.name} gpu {row.get('gpu', '?')}", []).append(row)
        res.gpu += [_series(label, rows, "utilization_percent") for label, rows in by_gpu.items()]
    res.processes = len(per_process)
    lines = [
        Series(label, *map(np.asarray, zip(*sorted(points), strict=True)))
        for label, points in per_process.items()
    ]
    res.rss = sorted(lines, key=lambda s: -s.peak)[:MAX_SERIES]
    res.rss.sort(key=lambda s: s.label)
    res.cpu = [s for s in res.cpu if len(s.t)]
    res.memory = [s for s in res.memory if len(s.t)]
    return res


def render(
    res: Resources, axis_ns: tuple[int, int] | None = None, width: int = WIDTH, left: int = LEFT
) -> str:
    """The section's body: three or four charts, or one line saying there is nothing.
    axis_ns: the report's time axis (epoch ns; default: the samples' own span), drawn
    over [left, width - 10] px as the timeline is, so that times line up with its bars."""
    span = res.span()
    if (res.empty or span is None) and res.monitored:
        return (
            '<p class="note" id="no-resource-samples">No resource samples in '
            f"logs/sys/perf/ yet: {NOT_YET}.</p>"
        )
    if res.empty or span is None:
        return (
            '<p class="note" id="no-resource-samples">No resource samples in '
            "logs/sys/perf/: the resource monitor was off (--resource_monitor_interval "
            "0) or the step ran on a Dask cluster; --resource_monitor_interval N samples "
            "every N seconds.</p>"
        )
    axis = (axis_ns[0] / 1e9, axis_ns[1] / 1e9) if axis_ns is not None else span
    mb = 1024.0 * 1024.0
    parts = [
        f'<p class="note">{res.samples} machine sample(s); {res.processes} worker '
        "process(es) sampled"
        + (f", the {MAX_SERIES} largest drawn" if res.processes > MAX_SERIES else "")
        + ".</p>"
    ]
    charts = [
        ("cpu", "machine CPU %", res.cpu, 100.0, lambda v: f"{v:.0f} %"),
        (
            "memory",
            "machine memory used",
            res.memory,
            res.memory_total or max((s.peak for s in res.memory), default=0.0),
            lambda v: f"{v / mb / 1024:.1f} GiB",
        ),
    ]
    if res.rss:
        charts.append(
            (
                "rss",
                "worker RSS",
                res.rss,
                max(s.peak for s in res.rss),
                lambda v: f"{v / mb:.0f} MiB",
            )
        )
    if res.gpu:
        charts.append(("gpu", "GPU utilisation %", res.gpu, 100.0, lambda v: f"{v:.0f} %"))
    for kind, title, series, top, fmt in charts:
        parts.append(_chart(kind, title, series, axis, top, fmt, width, left))
        parts.append(_legend(series))
    if not res.rss:
        parts.append(
            '<p class="note">No worker process was sampled (the serial executor '
            "runs the step in the driver: see machine CPU and memory).</p>"
        )
    return "".join(parts)


def _chart(
    kind: str,
    title: str,
    series: list[Series],
    axis: tuple[float, float],
    top: float,
    fmt: Callable[[float], str],
    width: int,
    left: int,
) -> str:
    """A line chart on the report's time axis: one polyline per series (a dot when it has
    one point) with its label and peak as its hover title."""
    e = html.escape
    top = top if top > 0 else 1.0
    t0, span = axis[0], max(axis[1] - axis[0], 1e-9)
    plot_w, plot_h = width - left - 10, HEIGHT - 30
    out = [
        f'<svg class="resource-chart" data-chart="{kind}" xmlns="http://www.w3.org/2000/svg"'
        f' width="{width}" height="{HEIGHT}" role="img" aria-label="{e(title)} over time">',
        f'<text x="4" y="14">{e(title)}</text>',
        f'<text x="4" y="30">{e(fmt(top))}</text>',
        f'<text x="4" y="{plot_h + 10}">0</text>',
        f'<rect x="{left}" y="10" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>',
    ]
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        t, v = _thin(s.t, s.v)
        xs = left + (t - t0) / span * plot_w
        ys = 10 + plot_h - np.clip(v / top, 0.0, 1.0) * plot_h
        tip = f"<title>{e(s.label)}: peak {e(fmt(s.peak))}</title>"
        if len(xs) == 1:
            out.append(
                f'<circle class="series" data-label="{e(s.label, quote=True)}" '
                f'cx="{xs[0]:.1f}" cy="{ys[0]:.1f}" r="3" fill="{colour}">{tip}</circle>'
            )
        else:
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
            out.append(
                f'<polyline class="series" data-label="{e(s.label, quote=True)}" '
                f'points="{points}" fill="none" stroke="{colour}" stroke-width="1.5">'
                f"{tip}</polyline>"
            )
    out.append(f'<text x="{left}" y="{HEIGHT - 4}">0 s</text>')
    out.append(f'<text x="{width - 60}" y="{HEIGHT - 4}">{span:.2f} s</text></svg>')
    return "".join(out)


def _legend(series: list[Series]) -> str:
    """Below a chart, in HTML (it wraps): each line's colour and label."""
    items = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{html.escape(s.label)}</span>'
        for i, s in enumerate(series)
    )
    return f'<p class="legend series-legend">{items}</p>'


def _thin(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points: each bucket's first time and largest value."""
    if len(t) <= MAX_POINTS:
        return t, v
    starts = np.linspace(0, len(t), MAX_POINTS, endpoint=False).astype(np.int64)
    return t[starts], np.maximum.reduceat(v, starts)


def _series(label: str, rows: list[dict[str, str]], column: str) -> Series:
    points = sorted(
        (t, _num(row.get(column), -1.0))
        for row in rows
        if (t := _time(row.get("time"))) is not None
    )
    points = [(t, x) for t, x in points if x >= 0]
    return Series(
        label,
        np.array([p[0] for p in points], dtype=float),
        np.array([p[1] for p in points], dtype=float),
    )


def _rows(path: Path) -> list[dict[str, str]]:
    """The file's rows as dicts; [] when it is missing or unreadable. A half-written last
    row (a run still going) has missing fields and is skipped by the callers' parsing."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            return [row for row in csv.DictReader(f) if row.get("time")]
    except (OSError, csv.Error):
        return []


def _time(text: str | None) -> float | None:
    # ...Z (UTC) as the monitor writes it; fromisoformat reads a Z only from Python 3.11.
    text = text or ""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _num(text: str | None, default: float = 0.0) -> float:
    try:
        return float(text) if text not in (None, "") else default
    except ValueError:
        return default
