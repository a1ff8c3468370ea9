"""``parajob example``: the bundled example written out for a user who has only the wheel.

Through the real CLI (``python -m parajob``), so under ``.ci/test-wheel`` these run the
installed package: the example must be in the wheel. The README's commands are run as a
user types them: ``parajob example word_count wc && parajob run wc/pipeline.yml`` in a new
folder, and ``parajob run examples/word_count/pipeline.yml`` from the repository root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [f"doc_{i:04d}.txt" for i in range(300)]
FILES = sorted(["make_data.py", "pipeline.yml", "src/count_words.py"] + [f"data/{d}" for d in DOCS])


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def output_file(stdout: str) -> Path:
    """The output the summary names (``output:  <run>/<step>/outputs/<name>``)."""
    found = re.search(r"^output:\s+(.+)$", stdout, flags=re.M)
    assert found, stdout
    return Path(found.group(1))


def test_without_a_name_it_lists_the_examples(tmp_path: Path) -> None:
    proc = run_cli("example", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parajob example NAME DIR" in proc.stdout
    assert re.search(r"^  word_count  Count the words of 300 text files", proc.stdout, re.M)
    assert list(tmp_path.iterdir()) == []


def test_the_readme_commands_for_a_wheel_user(tmp_path: Path) -> None:
    """``parajob example word_count wc && parajob run wc/pipeline.yml``, as typed."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\nparajob example word_count wc && parajob run wc/pipeline.yml\n" in readme
    proc = run_cli("example", "word_count", "wc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "run it with: parajob run wc/pipeline.yml" in proc.stdout
    assert tree(tmp_path / "wc") == FILES
    assert [p.name for p in tmp_path.iterdir()] == ["wc"]  # no staging folder left
    run = run_cli("run", "wc/pipeline.yml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    counts = output_file(run.stdout)
    assert counts.is_relative_to(tmp_path / "runs") and counts.name == "counts"
    assert [line.split(",")[0] for line in counts.read_text(encoding="utf-8").splitlines()] == DOCS


def test_the_readme_first_command_in_a_checkout() -> None:
    """``parajob run examples/word_count/pipeline.yml`` from the repository root (there a
    symlink to the package's copy; under .ci/test-wheel the wheel's, written out)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\npip install . && parajob run examples/word_count/pipeline.yml\n" in readme
    runs_existed = (ROOT / "runs").exists()
    proc = run_cli("run", "examples/word_count/pipeline.yml", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    counts = output_file(proc.stdout)
    run_dir = counts.parents[2]  # <run>/count_words/outputs/counts
    try:
        assert run_dir.parent == ROOT / "runs", run_dir
        assert len(counts.read_text(encoding="utf-8").splitlines()) == 300
    finally:  # leave the checkout as it was
        shutil.rmtree(run_dir)
        if not runs_existed:
            (ROOT / "runs").rmdir()


def test_dir_defaults_to_the_name_and_an_empty_folder_is_used(tmp_path: Path) -> None:
    proc = run_cli("example", "word_count", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path / "word_count") == FILES
    (tmp_path / "empty").mkdir()
    proc = run_cli("example", "word_count", "empty", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path / "empty") == FILES
    proc = run_cli("example", "word_count", "new/deeper/wc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path / "new" / "deeper" / "wc") == FILES


def test_an_unknown_name_lists_the_examples(tmp_path: Path) -> None:
    proc = run_cli("example", "wordcount", "wc", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown example 'wordcount' (the examples: word_count)" in proc.stderr
    assert "did you mean 'word_count'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_files_is_never_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "wc"
    (mine / "src").mkdir(parents=True)
    (mine / "pipeline.yml").write_text("my own pipeline\n", encoding="utf-8")
    proc = run_cli("example", "word_count", "wc", cwd=tmp_path)
    assert proc.returncode == 2
    assert "wc: error: DIR: exists and is not empty: nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree(mine) == ["pipeline.yml"] and (mine / "src").is_dir()
    assert (mine / "pipeline.yml").read_text(encoding="utf-8") == "my own pipeline\n"
    assert [p.name for p in tmp_path.iterdir()] == ["wc"]


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wc").write_text("keep\n", encoding="utf-8")
    proc = run_cli("example", "word_count", "wc", cwd=tmp_path)
    assert proc.returncode == 2
    assert "wc: error: DIR: is a file" in proc.stderr
    assert (tmp_path / "wc").read_text(encoding="utf-8") == "keep\n"


def test_the_data_is_what_make_data_writes(tmp_path: Path) -> None:
    """The 300 files are generated (make_data.py, deterministic): the shipped ones are its
    output, so the example can be regenerated and changed through the script."""
    assert run_cli("example", "word_count", "wc", cwd=tmp_path).returncode == 0
    shipped = {d: (tmp_path / "wc" / "data" / d).read_bytes() for d in DOCS}
    shutil.rmtree(tmp_path / "wc" / "data")
    subprocess.run([sys.executable, "make_data.py"], cwd=tmp_path / "wc", check=True)
    assert {d: (tmp_path / "wc" / "data" / d).read_bytes() for d in DOCS} == shipped
    assert tree(tmp_path / "wc") == FILES
