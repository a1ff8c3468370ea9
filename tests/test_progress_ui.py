"""The live progress display (issue 11): one line redrawn in place on a terminal at 60 and
120 columns (a real pseudo-terminal, the real CLI), plain lines with no control character
when piped, --quiet for none, and the line's fitting at any width."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, run_cli, run_in_pty, write_job

from parajob.runtime.progress import Snapshot, format_line

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n

FAIL_SOME = """
import os

def run(mini_batch):
    if any(p.endswith("f00004.txt") for p in mini_batch):
        raise ValueError("cannot parse f00004.txt")
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.mark.parametrize("columns", [60, 120])
def test_one_line_redrawn_in_place_at_any_width(tmp_path: Path, columns: int) -> None:
    write_job(tmp_path, FAIL_SOME, files=24, mini_batch_size=2, max_retries=1)
    code, out = run_in_pty(tmp_path, columns, "run", "pipeline.yml", "--run-dir", "run")
    assert code == 0, out
    display, _, summary = ANSI.sub("", out).partition("step:                 step")
    assert summary, out
    # One line: every redraw goes back to the start of the line and clears it; the only
    # line break is the one after the last redraw, before the summary.
    assert display.count("\n") == 1 and display.endswith("\r\n"), repr(display)
    redraws = display.rstrip("\r\n").split("\r")
    redraws = [d for d in redraws if d]
    assert len(redraws) >= 2, repr(display)  # the first line and the final one at least
    for line in redraws:
        assert len(line) < columns, f"{len(line)} columns: {line!r}"  # never wraps
    last = redraws[-1]
    assert "[step] 12/12" in last and "1 fail" in last and "ETA 0:00" in last, last
    assert "/s" in last and "0 run" in last
    if columns >= 120:
        assert "1 retry" in last and "items 24/24 (2 failed)" in last, last
        assert "last:ValueError: cannot" in last, last


def test_a_piped_run_writes_plain_lines_without_control_characters(tmp_path: Path) -> None:
    write_job(tmp_path, FAIL_SOME, files=12, mini_batch_size=2, max_retries=1)
    proc = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not CONTROL.search(proc.stderr), repr(proc.stderr)
    assert not CONTROL.search(proc.stdout), repr(proc.stdout)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[step] ")]
    assert len(lines) >= 2  # the first and the last
    assert lines[-1].startswith("[step] 6/6 mini-batches | 100% | 1 failed | ETA 0:00 |")
    assert "| 1 retry | items 12/12 (2 failed) |" in lines[-1]
    assert lines[-1].endswith("| last failure: ValueError: cannot parse f00004.txt")
    # The same line, and so the same ETA, in the overview file.
    (overview,) = (tmp_path / "run" / "step" / "logs").glob("job_progress_overview.*.txt")
    assert overview.read_text().splitlines()[-1].endswith(lines[-1])


def test_quiet_shows_no_progress(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=6)
    proc = run_cli("run", "pipeline.yml", "--run-dir", "run", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[step]" not in proc.stderr
    assert "status:               SUCCEEDED" in proc.stdout  # the summary is still shown
    code, out = run_in_pty(tmp_path, 80, "run", "pipeline.yml", "--run-dir", "run2", "-q")
    assert code == 0, out
    assert "[step]" not in out and "\x1b[2K" not in out


def _snapshot(**changes: object) -> Snapshot:
    values: dict[str, object] = dict(
        step="a-rather-long-step-name",
        total=123456,
        settled=65432,
        done=65000,
        failed=432,
        failed_attempts=1500,
        items_done=654321,
        items_failed=4321,
        items_total=1234567,
        running=16,
        elapsed_s=3725.0,
        rate=17.5,
        eta_s=3300.0,
        latest_failure="ValueError: could not convert string to float: 'n/a' in row 17",
    )
    values.update(changes)
    return Snapshot(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("width", range(10, 201, 7))
def test_the_line_fits_any_width(width: int) -> None:
    for snap in (_snapshot(), _snapshot(latest_failure="", eta_s=None, items_total=None)):
        line = format_line(snap, width)
        assert len(line) <= width and "\n" not in line
        if width >= 70:  # the long step name above and these three pieces
            assert "65432/123456" in line and "432 fail" in line and "ETA" in line


def test_the_full_line_has_every_piece() -> None:
    line = format_line(_snapshot())
    for piece in (
        "[a-rather-long-step-name] 65432/123456 mini-batches",
        "53%",
        "432 failed",
        "ETA 55:00",
        "17.5/s",
        "16 running",
        "1068 retries",
        "items 654321/1234567 (4321 failed)",
        "1:02:05",
        "last failure: ValueError: could not convert",
    ):
        assert piece in line, piece


OVERRUN = """
import os, time

def run(mini_batch):
    if any(p.endswith("f00002.txt") for p in mini_batch):
        time.sleep(1.5)  # past retry_settings.timeout (1 s): --serial warns, does not kill
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_warning_while_the_line_is_drawn_gets_a_line_of_its_own(tmp_path: Path) -> None:
    write_job(tmp_path, OVERRUN, files=4, mini_batch_size=1, timeout=1)
    code, out = run_in_pty(tmp_path, 120, "run", "pipeline.yml", "--run-dir", "run", "--serial")
    assert code == 0, out
    text = ANSI.sub("", out)
    (warning,) = [ln for ln in text.split("\r\n") if "parajob: warning: mini-batch 2" in ln]
    # The progress line was erased before the warning, not left in front of it.
    assert warning.rsplit("\r", 1)[-1].startswith("parajob: warning: mini-batch 2 attempt 1 ran")
