"""`parajob show RUN_DIR` and `parajob show --html`: what a user sees of a finished run and
of one still going, read from the run folder (tests/test_html_report.py opens the report in
a browser)."""

from __future__ import annotations

import csv
import html.parser
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import run_cli, run_job, write_job

from parajob.runtime.timeline import STATUSES, read_timeline

# Mini-batch 1 (f00003-f00005) always raises; mini-batch 2 fails once, then succeeds.
FLAKY = """
import os, pathlib

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if "f00004.txt" in names:
        raise ValueError("bad input f00004")
    if "f00007.txt" in names:
        marker = pathlib.Path(os.environ.get("TMP_MARK", "/nonexistent")) / "tried"
        if not marker.exists():
            marker.write_text("once")
            raise RuntimeError("flaky once")
    return names
"""


def _flaky_run(tmp_path: Path) -> Path:
    pipeline = write_job(
        tmp_path, FLAKY.replace('os.environ.get("TMP_MARK", "/nonexistent")', repr(str(tmp_path)))
    )
    result = run_job(tmp_path, pipeline)
    assert result.returncode == 0, result.stderr
    return result.run_dir


def _timeline(run_dir: Path) -> np.ndarray:
    return read_timeline(run_dir / "step" / "logs" / "sys" / "job_report" / "attempts_timeline.bin")


def test_timeline_holds_every_attempt_of_the_csv(tmp_path: Path) -> None:
    run_dir = _flaky_run(tmp_path)
    with open(run_dir / "step/logs/sys/job_report/processed_mini-batches.csv") as f:
        rows = {(int(r["index"]), int(r["attempt"]), r["status"]) for r in csv.DictReader(f)}
    records = _timeline(run_dir)
    seen = {(int(r["batch"]), int(r["attempt"]), STATUSES[int(r["status"])]) for r in records}
    assert len(records) == len(rows) == 6 + 3 + 1  # accepted, then the failed attempts
    assert seen == rows
    assert (records["end_ns"] >= records["start_ns"]).all()
    # Wall-clock times, within the run's life.
    started = (run_dir / "parajob-run.json").stat().st_mtime
    assert (records["start_ns"] / 1e9 > started - 5).all()
    assert (records["end_ns"] / 1e9 < time.time() + 1).all()


def test_show_a_finished_run(tmp_path: Path) -> None:
    run_dir = _flaky_run(tmp_path)
    shown = run_cli("show", str(run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "status:    succeeded" in out
    assert "step step (parallel): SUCCEEDED" in out
    assert "max_retries                      2" in out  # resolved settings
    assert "workers per node                 2" in out
    assert "7 total, 6 completed, 1 failed" in out
    assert "failed attempts: 4" in out
    assert "throughput:" in out and "items/s" in out
    assert "slowest mini-batches:" in out
    assert "mini-batch 1: 3 attempt(s), last raised: ValueError: bad input f00004" in out
    assert str(tmp_path / "data" / "f00004.txt") in out  # its inputs
    # The failed attempts with the log files that hold their tracebacks.
    assert "mini-batch 2 attempt 1 on node000/process00" in out
    error_logs = sorted((run_dir / "step/logs/user/error/node000").glob("*.txt"))
    assert any(str(p) in out for p in error_logs if p.stat().st_size)
    assert not any(ch in out for ch in "\r\x1b")


def test_show_refuses_what_is_not_a_run_folder(tmp_path: Path) -> None:
    missing = run_cli("show", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2
    assert f"{tmp_path / 'nope'} is not a folder" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_cli("show", str(tmp_path / "empty"), cwd=tmp_path)
    assert empty.returncode == 2
    assert "holds no parajob run" in empty.stderr
    stray = run_cli("show", str(tmp_path / "empty"), "-o", "x.html", cwd=tmp_path)
    assert stray.returncode == 2 and "-o/--output goes with --html" in stray.stderr


GATED = """
import os, pathlib, time

GATE = pathlib.Path({gate!r})

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if "f00019.txt" in names:
        while not GATE.exists():   # the test opens the gate once it has looked
            time.sleep(0.01)
    return names
"""


def test_show_a_run_still_going_without_taking_its_lock(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    pipeline = write_job(
        tmp_path,
        GATED.format(gate=str(gate)),
        files=20,
        mini_batch_size=1,
        concurrency=2,
        timeout=120,
    )
    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "parajob", "run", str(pipeline), "--run-dir", str(run_dir)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        # The 19 other mini-batches are decided and checkpointed while one waits at the gate.
        while len(_timeline(run_dir)) < 19:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the run never got past 19 mini-batches"
            time.sleep(0.05)
        shown = run_cli("show", str(run_dir), cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert f"status:    running (driver pid {driver.pid})" in shown.stdout
        assert "step step (parallel): RUNNING" in shown.stdout
        assert "20 total, 19 completed, 0 failed" in shown.stdout
        page = run_cli(
            "show", "--html", str(run_dir), "-o", str(tmp_path / "live.html"), cwd=tmp_path
        )
        assert page.returncode == 0, page.stderr
        assert (tmp_path / "live.html").read_text().count('class="attempt"') == 19
        gate.write_text("open")
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        gate.write_text("open")
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    # The run was never disturbed: it finished, and its folder is free for the next claimant.
    assert driver.returncode == 0, stderr
    assert "status:               SUCCEEDED" in stdout
    after = run_cli("show", str(run_dir), cwd=tmp_path)
    assert "status:    succeeded" in after.stdout
    assert "20 total, 20 completed, 0 failed" in after.stdout


def test_show_a_run_whose_driver_was_killed_names_the_resume_command(tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # never opened: the driver is killed while one batch waits
    pipeline = write_job(
        tmp_path,
        GATED.format(gate=str(gate)),
        files=20,
        mini_batch_size=1,
        concurrency=2,
        timeout=120,
    )
    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "parajob", "run", str(pipeline), "--run-dir", str(run_dir)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(_timeline(run_dir)) < 19:
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait()
    shown = run_cli("show", str(run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "status:    stopped" in shown.stdout
    assert "step step (parallel): STOPPED" in shown.stdout
    assert f"`parajob run --resume {run_dir}` finishes it" in shown.stdout
    # The resumed run appends its attempts to the same timeline; show reads the result.
    gate.write_text("open")
    resumed = run_cli("run", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = run_cli("show", str(run_dir), cwd=tmp_path)
    assert "step step (parallel): SUCCEEDED" in after.stdout
    assert "20 total, 20 completed, 0 failed" in after.stdout
    batches = _timeline(run_dir)["batch"]
    assert sorted(set(batches.tolist())) == list(range(20))


class _Page(html.parser.HTMLParser):
    """The tags and attributes of a page, and any reference to a resource elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self.external: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "rect" and a.get("class") == "attempt":
            self.attempts.append(a)
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(f"{tag} {key}={a[key]}")


def test_html_report_is_one_self_contained_file(tmp_path: Path) -> None:
    run_dir = _flaky_run(tmp_path)
    shown = run_cli("show", "--html", str(run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    report = run_dir / "parajob-report.html"
    assert shown.stdout.strip() == f"wrote {report}"
    text = report.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert page.external == []  # no script, stylesheet, image, link
    assert "script" not in page.tags and "link" not in page.tags
    # The one URL in the file is SVG's namespace, which is never fetched.
    assert {w for w in text.split('"') if "://" in w} == {"http://www.w3.org/2000/svg"}
    # One bar per attempt, coloured by status.
    records = _timeline(run_dir)
    assert len(page.attempts) == len(records) == 10
    got = sorted(
        (int(str(a["data-batch"])), int(str(a["data-attempt"])), str(a["data-status"]))
        for a in page.attempts
    )
    assert got == sorted(
        (int(r["batch"]), int(r["attempt"]), STATUSES[int(r["status"])]) for r in records
    )
    assert {a["data-worker"] for a in page.attempts} <= {"node000/process001", "node000/process002"}
    assert {
        "timeline-step",
        "throughput-step",
        "failures-step",
        "settings-step",
        "resources-step",
    } <= page.ids
    assert "ValueError: bad input f00004" in text
    assert "max_retries" in text
    # Hovering a bar names its attempt (an SVG <title> in each bar).
    assert "<title>mini-batch 1 attempt 3 on node000/process00" in text
    assert text.count("<title>mini-batch ") == len(records)


def test_html_report_goes_where_o_says(tmp_path: Path) -> None:
    run_dir = _flaky_run(tmp_path)
    target = tmp_path / "reports" / "today.html"
    shown = run_cli("show", "--html", str(run_dir), "-o", str(target), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not (run_dir / "parajob-report.html").exists()
    assert os.access(target, os.R_OK)


def test_show_a_run_of_an_older_parajob_from_its_job_result(tmp_path: Path) -> None:
    run_dir = _flaky_run(tmp_path)
    report = run_dir / "step" / "logs" / "sys" / "job_report"
    for name in ("settings.json", "workers.csv", "attempts_timeline.bin"):
        (report / name).unlink()
    shown = run_cli("show", str(run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "settings:        (not recorded: a run of an older parajob)" in shown.stdout
    assert "7 total, 6 completed, 1 failed" in shown.stdout
    assert "mini-batch 1: 3 attempt(s), last raised: ValueError: bad input f00004" in shown.stdout
    page = run_cli("show", "--html", str(run_dir), cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    assert "No attempts recorded" in (run_dir / "parajob-report.html").read_text()


def test_a_finished_run_is_not_running_whoever_has_its_old_pid(tmp_path: Path) -> None:
    """The lock file keeps the last owner's pid; a live process with that pid (reused)
    does not make the run look running: show asks the kernel who holds the lock."""
    run_dir = _flaky_run(tmp_path)
    (run_dir / ".parajob.lock").write_text(str(os.getpid()))  # alive: this test
    shown = run_cli("show", str(run_dir), cwd=tmp_path)
    assert "status:    succeeded\n" in shown.stdout
    assert "running" not in shown.stdout


def test_show_a_pipeline_of_a_parallel_and_a_command_step(tmp_path: Path) -> None:
    pipeline = write_job(
        tmp_path, FLAKY.replace('os.environ.get("TMP_MARK", "/nonexistent")', repr(str(tmp_path)))
    )
    pipeline.write_text(
        pipeline.read_text()
        + (
            "  after:\n    type: command\n    command: echo done\n"
            "    inputs:\n      rows: ${{parent.jobs.step.outputs.out}}\n"
        )
    )
    result = run_job(tmp_path, pipeline)
    assert result.returncode == 0, result.stderr
    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "step after (command): SUCCEEDED" in out
    assert out.index("step step (parallel)") < out.index("step after (command)")  # run order
    page = run_cli("show", "--html", str(result.run_dir), cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    text = (result.run_dir / "parajob-report.html").read_text()
    assert 'id="step-after"' in text and 'id="timeline-after"' not in text


CRASH_ONCE = """
import os, pathlib, signal

MARK = pathlib.Path({mark!r})

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if "f00004.txt" in names and not MARK.exists():
        MARK.write_text("once")
        os.kill(os.getpid(), signal.SIGSEGV)
    return names
"""


def test_a_crashed_attempt_has_its_bar_with_the_worker_that_died(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, CRASH_ONCE.format(mark=str(tmp_path / "mark")))
    result = run_job(tmp_path, pipeline)
    assert result.returncode == 0, result.stderr
    records = _timeline(result.run_dir)
    crashed = records[records["status"] == STATUSES.index("crashed")]
    assert len(crashed) == 1 and int(crashed[0]["batch"]) == 1
    assert int(crashed[0]["end_ns"]) >= int(crashed[0]["start_ns"])
    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    assert "mini-batch 1 attempt 1 on node000/process00" in shown.stdout
    assert ": crashed, " in shown.stdout
    # Its replacement worker is another lane entry of the same slot name, another process id.
    workers = (result.run_dir / "step/logs/sys/job_report/workers.csv").read_text().splitlines()
    assert workers[0] == "process,node,name,slot,started" and len(workers) == 1 + 3


HANG_ONCE = """
import os, pathlib, time

MARK = pathlib.Path({mark!r})

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if "f00004.txt" in names and not MARK.exists():
        MARK.write_text("once")
        time.sleep(60)  # past retry_settings.timeout: killed, then retried
    return names
"""


def test_a_timed_out_attempt_is_drawn_from_its_start_to_its_kill(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, HANG_ONCE.format(mark=str(tmp_path / "mark")), timeout=1)
    result = run_job(tmp_path, pipeline)
    assert result.returncode == 0, result.stderr
    records = _timeline(result.run_dir)
    timed_out = records[records["status"] == STATUSES.index("timed_out")]
    assert len(timed_out) == 1 and int(timed_out[0]["batch"]) == 1
    # At least the timeout long: it ran until the watchdog killed it.
    assert int(timed_out[0]["end_ns"]) - int(timed_out[0]["start_ns"]) >= 1e9
    page = run_cli("show", "--html", str(result.run_dir), cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    assert 'data-status="timed_out"' in (result.run_dir / "parajob-report.html").read_text()


def test_settings_shown_are_the_resolved_ones(tmp_path: Path) -> None:
    """Program arguments win over the YAML fields (as on Azure): show prints what ran."""
    write_job(
        tmp_path,
        FLAKY.replace('os.environ.get("TMP_MARK", "/nonexistent")', repr(str(tmp_path))),
        program_arguments="--error_threshold 5 --run_invocation_timeout 7",
        concurrency=3,
        timeout=60,
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    out = run_cli("show", str(result.run_dir), cwd=tmp_path).stdout
    assert "    error_threshold                  5\n" in out
    assert "    run timeout (s)                  7\n" in out
    assert "    workers per node                 3\n" in out
