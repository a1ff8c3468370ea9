"""The resource charts of `parajob show --html` (issue 11): drawn from logs/sys/perf/<node>/
*.csv at --resource_monitor_interval 1 (machine CPU, memory, one RSS line per sampled worker
process), one "no samples" line at 0, and readme.txt names what a monitored and profiled
run leaves in its logs folder."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from conftest import run_cli, run_job, write_job
from test_html_report import BROWSER, _open

# Each mini-batch waits (deadline: 60 s) until the monitor has sampled this worker twice,
# so every worker has an RSS line of two points without sleeping a guessed time.
WAIT_FOR_SAMPLES = """
import os, time
from pathlib import Path

def run(mini_batch):
    step = Path(os.getcwd()).parents[3]  # <run>/<step>/sys/work/<node>/<process>
    samples = step / "logs" / "sys" / "perf" / "node000" / "processes.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if samples.exists() and samples.read_text().count(f",{os.getpid()},") >= 2:
            break
        time.sleep(0.05)
    return [os.path.basename(p) for p in mini_batch]
"""


def _report(tmp_path: Path, run_dir: Path) -> str:
    target = tmp_path / "report.html"
    shown = run_cli("show", "--html", str(run_dir), "-o", str(target), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    return target.read_text(encoding="utf-8")


def _section(page: str) -> str:
    """The Resources section of step `step`: from its heading to the next one."""
    start = page.index('id="resources-step"')
    return page[start : page.index("<h3", start)]


def _sampled_processes(run_dir: Path) -> set[str]:
    path = run_dir / "step" / "logs" / "sys" / "perf" / "node000" / "processes.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return {row["process"] for row in csv.DictReader(f)}


def test_the_report_draws_the_monitors_samples(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        WAIT_FOR_SAMPLES,
        files=4,
        mini_batch_size=1,
        concurrency=2,
        program_arguments="--resource_monitor_interval 1",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    section = _section(_report(tmp_path, job.run_dir))
    charts = re.findall(r'<svg class="resource-chart" data-chart="(\w+)"', section)
    assert charts == ["cpu", "memory", "rss"]  # no GPU here: no gpu chart
    assert "No resource samples" not in section
    rss = section[section.index('data-chart="rss"') :]
    rss = rss[: rss.index("</svg>")]
    lines = re.findall(
        r'<polyline class="series" data-label="node000/process00\d \(id (\d+)\)"', rss
    )
    assert set(lines) == _sampled_processes(job.run_dir) and len(lines) >= 2
    cpu = section[section.index('data-chart="cpu"') :]
    assert '<polyline class="series" data-label="node000"' in cpu[: cpu.index("</svg>")]
    assert "<script" not in section and "href" not in section
    text = run_cli("show", str(job.run_dir), cwd=tmp_path)
    assert re.search(
        r"resources: +\d+ sample\(s\) in logs/sys/perf/ \(peak machine CPU "
        r"\d+ %, peak worker RSS \d+ MiB\)",
        text.stdout,
    ), text.stdout


def test_no_samples_at_interval_0_says_so(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        WAIT_FOR_SAMPLES.replace("60", "0"),
        files=2,
        mini_batch_size=1,
        program_arguments="--resource_monitor_interval 0",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    assert not (job.step_dir() / "logs" / "sys" / "perf").exists()
    section = _section(_report(tmp_path, job.run_dir))
    assert 'id="no-resource-samples"' in section
    assert "resource-chart" not in section
    text = run_cli("show", str(job.run_dir), cwd=tmp_path)
    assert "resources:       no samples in logs/sys/perf/" in text.stdout


def test_a_half_written_sample_is_skipped(tmp_path: Path) -> None:
    """A run still going: the last row of a CSV may be cut short; the report still draws."""
    write_job(
        tmp_path,
        WAIT_FOR_SAMPLES,
        files=2,
        mini_batch_size=1,
        concurrency=1,
        program_arguments="--resource_monitor_interval 1",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    perf = job.step_dir() / "logs" / "sys" / "perf" / "node000"
    with open(perf / "machine.csv", "a", encoding="utf-8") as f:
        f.write("2026-12-01T10:00:00.000+00:00,3.1,not-a-number")  # torn: no newline
    with open(perf / "processes.csv", "a", encoding="utf-8") as f:
        f.write("garbage")
    section = _section(_report(tmp_path, job.run_dir))
    assert re.findall(r'data-chart="(\w+)"', section) == ["cpu", "memory", "rss"]


def test_readme_txt_names_every_folder_a_monitored_profiled_run_leaves(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        WAIT_FOR_SAMPLES,
        files=2,
        mini_batch_size=1,
        concurrency=1,
        program_arguments="--resource_monitor_interval 1 "
        "--profiling_module cProfile --copy_logs_to_parent True",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    logs = job.step_dir() / "logs"
    readme = (logs / "readme.txt").read_text(encoding="utf-8")
    for path in sorted(logs.rglob("*")):
        if path.is_dir():
            continue
        # A file's folder, with node and process names as the readme writes them.
        rel = path.relative_to(logs)
        folder = re.sub(r"node\d{3}", "<node>", str(rel.parent))
        name = re.sub(r"process\d{3}", "processNNN", rel.name)
        if str(rel.parent) == ".":
            stem = name.split(".", 1)[0]
            assert stem in readme, f"readme.txt does not name {rel}"
        else:
            assert folder + "/" in readme, f"readme.txt does not name the folder of {rel}"
    assert (job.run_dir / "logs" / "step" / "job_result.txt").is_file()
    assert "<run>/logs/step/" in readme


@pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium on this machine (`apt-get install chromium`; .ci/run installs it)",
)
def test_the_charts_open_offline_in_chromium(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        WAIT_FOR_SAMPLES,
        files=2,
        mini_batch_size=1,
        concurrency=2,
        program_arguments="--resource_monitor_interval 1",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    _report(tmp_path, job.run_dir)
    dom, console, requests = _open(tmp_path / "report.html", tmp_path)
    assert console == [] and requests == []
    assert dom.count('class="resource-chart"') == 3


def test_a_step_on_a_dask_cluster_is_not_sampled_and_says_so(tmp_path: Path) -> None:
    """The driver's psutil sees the driver's machine: it is not drawn as the nodes'."""
    pytest.importorskip("distributed")
    from dask_cluster import DaskCluster

    cluster = DaskCluster.start(tmp_path / "cluster", 1)
    try:
        write_job(
            tmp_path,
            WAIT_FOR_SAMPLES.replace("60", "0"),
            files=4,
            mini_batch_size=2,
            concurrency=1,
            extra_step="compute: cpu-cluster\n",
            program_arguments="--resource_monitor_interval 1",
        )
        job = run_cli(
            "run",
            str(tmp_path / "pipeline.yml"),
            "--run-dir",
            str(tmp_path / "run"),
            "--compute",
            f"cpu-cluster={cluster.address}",
            cwd=tmp_path,
        )
    finally:
        cluster.stop()
    assert job.returncode == 0, job.stderr
    assert "--resource_monitor_interval 1: not sampled on Dask cluster nodes yet" in job.stderr
    assert not (tmp_path / "run" / "step" / "logs" / "sys" / "perf").exists()
    assert 'id="no-resource-samples"' in _section(_report(tmp_path, tmp_path / "run"))


def test_many_processes_and_samples_are_cut_to_what_a_browser_draws_at_once(tmp_path: Path) -> None:
    """A long run (more samples than MAX_POINTS) with worker recycling (more processes than
    MAX_SERIES): the largest processes are drawn, and a peak survives the thinning."""
    from parajob.show.resources import MAX_POINTS, MAX_SERIES

    write_job(
        tmp_path,
        WAIT_FOR_SAMPLES,
        files=1,
        mini_batch_size=1,
        concurrency=1,
        program_arguments="--resource_monitor_interval 1",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    perf = job.step_dir() / "logs" / "sys" / "perf" / "node000"
    with open(perf / "processes.csv", "a", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        for process in range(100, 100 + MAX_SERIES + 12):  # recycled workers, 1 MiB apart
            out.writerow(
                [
                    "2026-12-01T10:00:00.000+00:00",
                    "1.0",
                    "process001",
                    process,
                    process,
                    "1.0",
                    (process + 1000) * 2**20,
                ]
            )
        for i in range(3 * MAX_POINTS):  # one process sampled for a long time, one peak
            rss = 2 * 2**30 if i == 1001 else 2**30
            out.writerow(
                [
                    f"2026-12-01T10:{i // 60 % 60:02d}:{i % 60:02d}.000+00:00",
                    i,
                    "process001",
                    99,
                    99,
                    "1.0",
                    rss,
                ]
            )
    section = _section(_report(tmp_path, job.run_dir))
    rss = section[section.index('data-chart="rss"') :]
    rss = rss[: rss.index("</svg>")]
    drawn = re.findall(r'data-label="node000/process001 \(id (\d+)\)"', rss)
    assert len(drawn) == MAX_SERIES
    assert "99" in drawn and str(100 + MAX_SERIES + 11) in drawn and "100" not in drawn
    assert f", the {MAX_SERIES} largest drawn." in section
    long_line = re.search(r'data-label="node000/process001 \(id 99\)" points="([^"]*)"', rss)
    assert long_line is not None
    points = long_line.group(1).split()
    assert len(points) == MAX_POINTS
    # The peak is the chart's top (y = 10 px): kept although a stride would skip it.
    assert sum(p.endswith(",10.0") for p in points) == 1
    assert "peak 2048 MiB" in rss
