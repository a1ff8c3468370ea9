"""Ordinary misuse (issue 8): outputs are the run's own, the job never depends on the
terminal, and each input that used to end in a traceback is a located error or a correct run.

Every test runs the real CLI in a subprocess and asserts what a user sees: the exit code,
the message (file, line, field), the output file and job_result.txt, and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, RUN_TIMEOUT_S, JobRun, run_cli, run_job, write_job

OUTPUT_BLOCK = "      out:\n        type: uri_file\n"


def with_output_path(pipeline: Path, path: str, kind: str = "uri_file") -> None:
    """Give write_job's output `out` a path: (and a type)."""
    text = pipeline.read_text(encoding="utf-8")
    assert OUTPUT_BLOCK in text
    pipeline.write_text(
        text.replace(OUTPUT_BLOCK, f"      out:\n        type: {kind}\n        path: {path}\n"),
        encoding="utf-8",
    )


def output_path_line(pipeline: Path) -> int:
    """The line of `path:` under `outputs:` (write_job's one output)."""
    lines = pipeline.read_text().splitlines()
    start = lines.index("    outputs:")
    return next(i for i in range(start, len(lines)) if "path: " in lines[i]) + 1


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# -- outputs are the run's own --------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "kind", "expected"),
    [
        ("./src/entry.py", "uri_file", "is the entry script of step 'step'"),
        ("./data/f00001.txt", "uri_file", "lies inside input 'data' of step 'step'"),
        ("./data", "uri_folder", "is input 'data' of step 'step'"),
        (".", "uri_folder", "contains input 'data' of step 'step'"),
        ("./src/results.txt", "uri_file", "lies inside the code folder of step 'step'"),
        ("./pipeline.yml", "uri_file", "is the pipeline file"),
        ("./blocker/out.txt", "uri_file", "cannot be created: "),
    ],
)
def test_an_output_may_not_be_the_users_own_files(
    tmp_path: Path, path: str, kind: str, expected: str
) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=4)
    with_output_path(pipeline, path, kind)
    (tmp_path / "blocker").write_text("a file where a folder is needed\n")
    script = (tmp_path / "src" / "entry.py").read_bytes()
    yaml_text = pipeline.read_bytes()
    at = f"pipeline.yml:{output_path_line(pipeline)}:"
    for command in (
        ["validate", "pipeline.yml"],
        ["run", "pipeline.yml", "--run-dir", str(tmp_path / "run")],
    ):
        proc = run_cli(*command, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert at in proc.stderr and "jobs.step.outputs.out.path" in proc.stderr, proc.stderr
        assert expected in proc.stderr, proc.stderr
        assert "hint: " in proc.stderr
        no_traceback(proc.stderr)
    assert not (tmp_path / "run" / "step").exists()  # refused before anything started
    assert (tmp_path / "src" / "entry.py").read_bytes() == script
    assert pipeline.read_bytes() == yaml_text
    assert (tmp_path / "data" / "f00001.txt").read_text() == "item 1\n"


def test_two_steps_may_not_write_one_output(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=4)
    with_output_path(pipeline, "./results/out.txt")
    text = pipeline.read_text()
    step = text[text.index("  step:") :]
    pipeline.write_text(text + step.replace("  step:", "  again:", 1))
    proc = run_cli("validate", "pipeline.yml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    second = [
        i
        for i, line in enumerate(text.splitlines() + step.splitlines(), 1)
        if "path: ./results/out.txt" in line
    ][1]
    assert f"pipeline.yml:{second}:" in proc.stderr, proc.stderr
    assert "jobs.again.outputs.out.path" in proc.stderr
    assert "is output 'out' of step 'step'" in proc.stderr
    no_traceback(proc.stderr)


PREP_THEN_SCORE = """\
type: pipeline
jobs:
  prep:
    type: command
    command: echo x > ${{{{outputs.prepared}}}}/a.txt
    outputs:
      prepared: {{type: uri_folder, path: ./prepared}}
  score:
    type: parallel
    inputs:
      data: {data}
    outputs:
      out: {{type: uri_file}}
    input_data: ${{{{inputs.data}}}}
    task:
      type: run_function
      code: ./src
      entry_script: entry.py
      append_row_to: ${{{{outputs.out}}}}
"""


def test_an_output_read_by_another_step_must_be_bound_not_shared(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=1)
    (tmp_path / "prepared").mkdir()
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(PREP_THEN_SCORE.format(data="{type: uri_folder, path: ./prepared}"))
    proc = run_cli("validate", "pipeline.yml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "pipeline.yml:7:" in proc.stderr and "jobs.prep.outputs.prepared.path" in proc.stderr
    assert "is input 'data' of step 'score'" in proc.stderr
    assert "${{parent.jobs.prep.outputs.prepared}}" in proc.stderr  # the hint: bind it
    pipeline.write_text(PREP_THEN_SCORE.format(data="${{parent.jobs.prep.outputs.prepared}}"))
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output("score") == "a.txt\n"


BIG_ROWS_SCRIPT = """
import os
import time
from pathlib import Path

TAG = os.environ["ROW_TAG"]

def run(mini_batch):
    return [f"{TAG} {i:07d} " + "x" * 90 for i in range(150_000)]

def shutdown():
    # Both runs end at once, so that both merge into the one output at the same time.
    Path(os.environ["MINE"]).touch()
    deadline = time.monotonic() + 60
    while not Path(os.environ["OTHER"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
"""


def test_two_runs_sharing_one_output_never_mix_rows(tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "out.txt"
    procs = []
    for tag, other in (("a", "b"), ("b", "a")):
        folder = tmp_path / tag
        folder.mkdir()
        pipeline = write_job(folder, BIG_ROWS_SCRIPT, files=1, mini_batch_size=1, concurrency=1)
        with_output_path(pipeline, str(shared))
        env = {
            **os.environ,
            "ROW_TAG": tag,
            "MINE": str(tmp_path / f"{tag}.done"),
            "OTHER": str(tmp_path / f"{other}.done"),
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "parajob",
                    "run",
                    "pipeline.yml",
                    "--run-dir",
                    str(folder / "run"),
                ],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [p.communicate(timeout=RUN_TIMEOUT_S) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, out + err
        no_traceback(err)
    lines = shared.read_text().splitlines()
    tags = {line.split(" ", 1)[0] for line in lines}
    assert len(tags) == 1 and len(lines) == 150_000, (tags, len(lines))  # one run's, whole
    assert lines == [f"{next(iter(tags))} {i:07d} " + "x" * 90 for i in range(150_000)]
    assert os.listdir(shared.parent) == ["out.txt"]  # no temporary file left behind


# -- the job never depends on the terminal ----------------------------------------------------
WAIT_SCRIPT = """
import os
import time
from pathlib import Path

def run(mini_batch):
    # Hold the job until the test has closed its end of the terminal pipe.
    deadline = time.monotonic() + 60
    while not Path(os.environ["GO"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return [os.path.basename(p) for p in mini_batch]
"""


def _start(tmp_path: Path, **popen: object) -> subprocess.Popen[bytes]:
    write_job(tmp_path, WAIT_SCRIPT, files=6, mini_batch_size=2)
    env = {**os.environ, "GO": str(tmp_path / "go")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parajob",
            "run",
            "pipeline.yml",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        env=env,
        **popen,
    )  # type: ignore[call-overload]


def _assert_complete(tmp_path: Path, returncode: int) -> None:
    assert returncode == 0
    output = (tmp_path / "run" / "step" / "outputs" / "out").read_text()
    assert output.splitlines() == [f"f{i:05d}.txt" for i in range(6)]
    assert (
        "status:               SUCCEEDED"
        in (tmp_path / "run" / "step" / "logs" / "job_result.txt").read_text()
    )


def test_a_terminal_pipe_closed_after_one_line_changes_nothing(tmp_path: Path) -> None:
    # `parajob run ... 2>&1 | head -1`
    proc = _start(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    (tmp_path / "go").touch()
    _assert_complete(tmp_path, proc.wait(timeout=RUN_TIMEOUT_S))


def test_a_closed_stderr_changes_nothing(tmp_path: Path) -> None:
    # `parajob run ... 2>&-`
    (tmp_path / "go").touch()
    proc = _start(tmp_path, stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2))
    out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    _assert_complete(tmp_path, proc.returncode)
    assert b"status:               SUCCEEDED" in out  # stdout still gets the summary
    no_traceback(out.decode())


# -- tracebacks that became answers -----------------------------------------------------------
def test_an_empty_input_folder_is_a_job_of_zero_mini_batches(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=0)
    (tmp_path / "data").mkdir(exist_ok=True)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    assert result.output() == ""
    assert "SUCCEEDED" in result.job_result()
    assert "the input has no files: 0 mini-batches" in result.job_result()


ODD_NAME = b"caf\xe9.txt"  # Latin-1 bytes: not UTF-8

READ_SCRIPT = """
import os

def run(mini_batch):
    rows = []
    for path in mini_batch:
        with open(path) as f:  # the str that os.fsdecode gives opens the file
            rows.append(os.path.basename(path) + ":" + f.read().strip())
    return rows
"""


def _odd_names_job(tmp_path: Path, script: str) -> None:
    write_job(tmp_path, script, files=2, mini_batch_size=1, max_retries=0)
    fd = os.open(
        os.path.join(os.fsencode(tmp_path / "data"), ODD_NAME), os.O_WRONLY | os.O_CREAT, 0o644
    )
    os.write(fd, b"odd\n")
    os.close(fd)


def test_file_names_that_are_not_utf8_pass_through(tmp_path: Path) -> None:
    _odd_names_job(tmp_path, READ_SCRIPT)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    output = (result.step_dir() / "outputs" / "out").read_bytes()
    # the row holds the file's own bytes back: it names that very file
    assert output.splitlines() == [ODD_NAME + b":odd", b"f00000.txt:item 0", b"f00001.txt:item 1"]
    assert "3 in, 3 returned, 0 failed" in result.job_result()
    assert (
        result.step_dir() / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    ).read_text().count("\n") == 4


def test_a_failure_on_a_file_name_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    _odd_names_job(
        tmp_path,
        """
    def run(mini_batch):
        if "caf" in mini_batch[0]:
            raise ValueError(f"cannot score {mini_batch[0]}")
        return mini_batch
    """,
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr  # failed mini-batches are allowed (-1)
    no_traceback(result.stderr)
    job_result = result.job_result()
    assert "1 failed" in job_result and "caf\\udce9.txt" in job_result
    assert "cannot score" in (result.step_dir() / "logs" / "job_error.txt").read_text()


FULL_DISK_SCRIPT = """
import os
import resource
from pathlib import Path

def run(mini_batch):
    return [f"{os.path.basename(p)} {i} " + "x" * 80 for p in mini_batch for i in range(1000)]

def shutdown():
    # A stand-in for a full disk: from now on the driver (our parent) can write no file
    # past 8 KiB, so its merge of ~90 KiB fails with EFBIG ("File too large"); the logs it
    # writes at the end stay under that. CPython ignores SIGXFSZ: write() returns EFBIG.
    if Path(os.environ["DISK_FULL"]).exists():
        resource.prlimit(os.getppid(), resource.RLIMIT_FSIZE, (8192, 8192))
"""


def test_an_output_that_cannot_be_written_at_the_end_fails_the_job_cleanly(tmp_path: Path) -> None:
    write_job(tmp_path, FULL_DISK_SCRIPT, files=1, mini_batch_size=1, concurrency=1)
    full = tmp_path / "disk-full"
    full.touch()
    env = {"DISK_FULL": str(full)}
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path, env=env)
    result = JobRun(proc.returncode, proc.stdout, proc.stderr, tmp_path / "run")
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result.stderr)
    target = result.step_dir() / "outputs" / "out"
    job_result = result.job_result()
    assert "status:               FAILED" in job_result
    assert f"the output could not be written to {target}" in job_result
    assert "File too large" in job_result and "--resume" in job_result
    assert "File too large" in result.stdout  # the terminal shows the same summary
    assert os.listdir(target.parent) == []  # nothing half-written, no temporary file
    # Room again: --resume writes the output from the journal, running nothing again.
    full.unlink()
    resumed = run_cli("run", "--resume", str(tmp_path / "run"), cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(target.read_text().splitlines()) == 1000
    attempts = result.step_dir() / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    assert attempts.read_text().count("\n") == 2  # the header and the one attempt


TINY_DISK_SCRIPT = """
import os
import resource

def run(mini_batch):
    return [os.path.basename(p) + " " + "y" * 60 for p in mini_batch]

def shutdown():
    # Now the driver can write no file past 256 bytes: the output, processed_mini-batches.csv
    # and job_result.txt all fail at the end (as on a full disk).
    resource.prlimit(os.getppid(), resource.RLIMIT_FSIZE, (256, 256))
"""


def test_a_disk_too_full_for_the_logs_too_ends_with_a_message(tmp_path: Path) -> None:
    write_job(tmp_path, TINY_DISK_SCRIPT, files=40, mini_batch_size=1, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result.stderr)
    assert "status:               FAILED" in result.stdout
    assert "processed_mini-batches.csv: File too large" in result.stdout
    assert "parajob: could not write " in result.stderr and "job_result.txt" in result.stderr
    assert not (result.step_dir() / "logs" / "job_result.txt").exists()  # nothing half-written
    assert os.listdir(result.step_dir() / "outputs") == []


MLTABLE = """\
type: mltable
paths:
  - file: ./tiny.csv
transformations:
  - read_delimited:
      delimiter: ','
      header: all_files_same_headers
"""


@pytest.mark.parametrize("content", [b"", b"a", b"a\n"])
def test_a_csv_of_two_bytes_or_less_is_an_empty_table(tmp_path: Path, content: bytes) -> None:
    pipeline = write_job(
        tmp_path, "def run(mini_batch):\n    return mini_batch\n", mini_batch_size="1kb"
    )
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "MLTable").write_text(MLTABLE)
    (tmp_path / "table" / "tiny.csv").write_bytes(content)
    text = pipeline.read_text().replace(
        "type: uri_folder\n        path: ./data", "type: mltable\n        path: ./table"
    )
    pipeline.write_text(text)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    assert result.output() == ""
    assert "the input has no rows: 0 mini-batches" in result.job_result()


def _deep_list() -> str:
    return "[" * 10_000 + "]" * 10_000


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('    display_name: "scores\0"', "a NUL byte (#x0000) is not allowed"),
        (f"    tags: {_deep_list()}", "nested more than 100 levels deep"),
        (
            '    mini_batch_size: "99999999999999999999999"',
            "'99999999999999999999999' is too large",
        ),
    ],
    ids=["nul-byte", "nested-10000-deep", "mini-batch-size-over-2^64"],
)
def test_yaml_edge_cases_are_located_errors(tmp_path: Path, line: str, fragment: str) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=2)
    text = pipeline.read_text()
    text = text.replace('    mini_batch_size: "3"\n', "") if "mini_batch_size" in line else text
    lines = text.splitlines()
    where = next(i for i, x in enumerate(lines) if x.startswith("    input_data:")) + 1
    lines.insert(where, line)
    pipeline.write_text("\n".join(lines) + "\n")
    for command in (
        ["validate", "pipeline.yml"],
        ["run", "pipeline.yml", "--run-dir", str(tmp_path / "run")],
    ):
        proc = run_cli(*command, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"pipeline.yml:{where + 1}:" in proc.stderr, proc.stderr
        assert fragment in proc.stderr, proc.stderr
        no_traceback(proc.stderr)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_that_cannot_be_created_is_bad_input(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=2)
    (tmp_path / "blocker").write_text("")
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", str(tmp_path / "blocker" / "run"), cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "--run-dir: cannot use run folder" in proc.stderr and "Not a directory" in proc.stderr
    no_traceback(proc.stderr)
