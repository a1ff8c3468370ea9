"""The README's "Python API" section, run as written.

Every fenced ``python`` block under that heading (up to the next ``## `` heading) is run,
in order and in one namespace, in a temporary folder holding a copy of the bundled
example (``examples/word_count``), as a reader would paste them from the repository root.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Python API"


def api_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n{HEADING}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


def test_the_section_has_examples() -> None:
    blocks = api_blocks()
    assert len(blocks) >= 4
    joined = "\n".join(blocks)
    for promise in (
        "parajob.run(",
        "parajob.SpecError",
        "cancel=",
        "on_progress=",
        "resume=True",
        "threading.Thread",
        "parajob.load(",
    ):
        assert promise in joined, promise


def test_the_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(
        ROOT / "examples" / "word_count",
        tmp_path / "examples" / "word_count",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for n, block in enumerate(api_blocks(), start=1):
        exec(compile(block, f"README.md: {HEADING} block {n}", "exec"), namespace)  # noqa: S102
