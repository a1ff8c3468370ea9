"""The corpus of invalid pipelines (tests/data/invalid): `parajob validate` must refuse each
with exit code 2, say what is wrong, and point at the right file and line.

Each case is a small pipeline (most are one mutation of ``_valid.yml``) whose header says
what to expect::

    # <what is wrong, in words>
    # error-at: @needle          an error is reported at the first line (after the header)
                                 that holds ``needle``, in this file
    # error-at: FILE:LINE        ... or at LINE of FILE (a component, script, MLTable)
    # expect: <fragment>         the output holds this text

The shared files the cases name (data, scripts, components) are in ``_support/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from parajob.cli import main

CORPUS = Path(__file__).parent / "data" / "invalid"
CASES = sorted(p.name for p in CORPUS.glob("*.yml") if not p.name.startswith("_"))


@pytest.fixture(autouse=True)
def in_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    # Messages name files relative to the working folder: run where the cases are.
    monkeypatch.chdir(CORPUS)


def validate(name: str) -> Result:
    return runner().invoke(main, ["validate", name])


def runner() -> CliRunner:
    """A runner that keeps stderr apart: click 8.2 always does (and takes no mix_stderr);
    click 8.1, parajob's floor, mixes it into the output unless told not to."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def header(text: str) -> tuple[list[str], list[str]]:
    at, expect = [], []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(": ")
        if key == "error-at":
            at.append(value)
        elif key == "expect":
            expect.append(value)
    return at, expect


def position(name: str, text: str, spec: str) -> str:
    """``FILE:LINE`` (or ``FILE`` alone) that an error line must start with."""
    if not spec.startswith("@"):
        return spec
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    line = next(i for i in range(first, len(lines)) if spec[1:] in lines[i]) + 1
    return f"{name}:{line}"


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_the_pipeline_the_cases_start_from_is_valid() -> None:
    result = validate("_valid.yml")
    assert result.exit_code == 0, result.output
    assert "_valid.yml: valid (1 step(s): score (parallel))" in result.stdout


@pytest.mark.parametrize("name", CASES)
def test_invalid_pipeline(name: str) -> None:
    text = (CORPUS / name).read_text(encoding="utf-8")
    at, expect = header(text)
    assert at and expect, f"{name}: the header needs error-at: and expect: lines"
    result = validate(name)
    shown = result.stderr
    assert result.exit_code == 2, f"exit code {result.exit_code}\n{result.output}"
    for fragment in expect:
        assert fragment in shown, f"{fragment!r} not in:\n{shown}"
    for spec in at:
        where = position(name, text, spec)
        pattern = (
            rf"^{re.escape(where)}(:\d+)?: error: "
            if ":" in where
            else rf"^{re.escape(where)}: error: "
        )
        assert re.search(pattern, shown, re.MULTILINE), f"no error at {where}:\n{shown}"
    assert "Traceback (most recent call last)" not in shown
    assert "valid (" not in result.stdout
