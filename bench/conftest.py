"""Benchmarks report their ratios against the peers at the end of the run.

A suite calls ``report(line)``; the lines are printed in pytest's terminal summary, so they
show with or without ``-s`` and after pytest-benchmark's own table.
"""

from __future__ import annotations

import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

_lines: list[str] = []


def report(line: str) -> None:
    _lines.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _lines:
        terminalreporter.section("parajob vs peers")
        for line in _lines:
            terminalreporter.write_line(line)


def cached_file_tree(name: str, n_files: int, content: Callable[[int], bytes]) -> Path:
    """$TMPDIR/parajob-bench-<name>/data: n_files small files, 1000 per folder, made once
    and reused across sessions (a marker file says the tree is complete)."""
    base = Path(tempfile.gettempdir()) / f"parajob-bench-{name}"
    root, marker = base / "data", base / "complete"
    if not marker.exists():
        for i in range(n_files):
            folder = root / f"{i // 1000:03d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:06d}.txt").write_bytes(content(i))
        marker.touch()
    return root


def write_file_job(
    folder: Path, step: str, data: Path, entry: str, workers: int, extra: str = ""
) -> Path:
    """A one-step pipeline: one-file mini-batches of `data`, append_row to a uri_file, the
    entry script `entry` (source text), `extra` YAML lines added to the step."""
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "entry.py").write_text(textwrap.dedent(entry))
    extra_lines = textwrap.indent(textwrap.dedent(extra), " " * 4)
    (folder / "pipeline.yml").write_text(
        "type: pipeline\n"
        "jobs:\n"
        f"  {step}:\n"
        "    type: parallel\n"
        "    inputs:\n"
        f"      data: {{type: uri_folder, path: {data}}}\n"
        "    outputs:\n"
        "      out: {type: uri_file}\n"
        "    input_data: ${{inputs.data}}\n"
        '    mini_batch_size: "1"\n'
        f"    max_concurrency_per_instance: {workers}\n"
        f"{extra_lines}"
        "    task:\n"
        "      type: run_function\n"
        "      code: ./src\n"
        "      entry_script: entry.py\n"
        "      append_row_to: ${{outputs.out}}\n"
    )
    return folder / "pipeline.yml"
