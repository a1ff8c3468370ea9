"""The HTML report of `parajob show --html` in a real browser: headless Chromium loads it
from disk with no console error and no network request, and its DOM holds one timeline bar
per attempt. .ci/run installs Chromium from the system packages; where it is not there
(a developer machine without it) these tests skip and say so.

Chromium is driven by its command line only (no CDP client to install): --dump-dom gives
the DOM after the page ran, --enable-logging=stderr prints every console message as
"INFO:CONSOLE", --log-net-log writes every request the browser made. The browser's own
background requests (updates, accounts) are told apart from the page's by their network
isolation key, which is the page's site (file://) for the page's requests only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from test_show import _flaky_run, _timeline

from parajob.runtime.timeline import STATUSES

BROWSER = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
    None,
)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium on this machine (`apt-get install chromium`; .ci/run installs it)",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--enable-logging=stderr",
    "--v=0",
]


def _open(page: Path, tmp_path: Path) -> tuple[str, list[str], list[str]]:
    """(DOM after load, console messages, URLs the page itself requested beyond file:)."""
    assert BROWSER is not None
    net_log = tmp_path / f"{page.stem}-netlog.json"
    proc = subprocess.run(
        [
            BROWSER,
            *FLAGS,
            f"--log-net-log={net_log}",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [
        e["params"]["url"]
        for e in log["events"]
        if e.get("type") == start_job
        and str(e.get("params", {}).get("network_isolation_key", "")).startswith("file:")
        and not e["params"]["url"].startswith("file:")
    ]
    return proc.stdout, console, requests


def test_the_check_itself_sees_console_errors_and_requests(tmp_path: Path) -> None:
    """A control: a page that logs an error and loads an image from a host is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="http://example.invalid/x.png">'
        '<script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    _, console, requests = _open(bad, tmp_path)
    assert any('"boom"' in line for line in console)
    assert requests == ["http://example.invalid/x.png"]


def test_report_opens_offline_with_one_bar_per_attempt(tmp_path: Path) -> None:
    run_dir = _flaky_run(tmp_path)  # retries, and one mini-batch failed for good
    report = tmp_path / "report.html"
    shown = run_cli("show", "--html", str(run_dir), "-o", str(report), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    dom, console, requests = _open(report, tmp_path)
    assert console == []
    assert requests == []
    records = _timeline(run_dir)
    assert dom.count('class="attempt"') == len(records) == 10
    for status in {STATUSES[int(r["status"])] for r in records}:
        assert f'data-status="{status}"' in dom
    assert "ValueError: bad input f00004" in dom
