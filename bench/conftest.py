"""Benchmarks report their ratios against the peers at the end of the run.

A suite calls ``report(line)``; the lines are printed in pytest's terminal summary, so they
show with or without ``-s`` and after pytest-benchmark's own table.
"""

from __future__ import annotations

from typing import Any

_lines: list[str] = []


def report(line: str) -> None:
    _lines.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _lines:
        terminalreporter.section("parajob vs peers")
        for line in _lines:
            terminalreporter.write_line(line)
