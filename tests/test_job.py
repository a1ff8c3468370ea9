"""End to end: a pipeline YAML in, worker processes, the append_row output and logs out."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from conftest import ECHO_SCRIPT, run_cli, run_job, write_job

REPO = Path(__file__).resolve().parents[1]


def test_two_instances_of_four_workers_equal_a_serial_run(tmp_path: Path) -> None:
    script = """
    import os
    def run(mini_batch):
        return [f"{os.path.relpath(p, os.path.dirname(os.path.dirname(p)))} {os.getpid()}"
                for p in mini_batch]
    """
    parallel, serial = tmp_path / "parallel", tmp_path / "serial"
    parallel.mkdir(), serial.mkdir()
    write_job(
        parallel, script, files=200, mini_batch_size=3, concurrency=4, instances=2, nested=True
    )
    write_job(serial, script, files=200, mini_batch_size=3, concurrency=1, instances=1, nested=True)
    p, s = run_job(parallel), run_job(serial)
    assert p.returncode == 0, p.stderr
    assert s.returncode == 0, s.stderr
    strip_pid = lambda text: [line.rsplit(" ", 1)[0] for line in text.splitlines()]  # noqa: E731
    assert strip_pid(p.output()) == strip_pid(s.output())
    assert len(strip_pid(p.output())) == 200
    # Input order: sorted relative paths, one line per file.
    expected = sorted(
        str(f.relative_to(parallel / "data")) for f in (parallel / "data").rglob("*.txt")
    )
    assert strip_pid(p.output()) == expected
    # Eight worker processes were started, four per node, each with its own logs.
    logs = p.step_dir() / "logs" / "user" / "stderr"
    assert sorted(str(f.relative_to(logs)) for f in logs.rglob("*.txt")) == [
        f"node00{n}/process00{r}.stderr.txt" for n in (0, 1) for r in (1, 2, 3, 4)
    ]
    rows = list(
        csv.DictReader(
            open(p.step_dir() / "logs" / "sys" / "job_report" / "processed_mini-batches.csv")
        )
    )
    assert sorted(int(r["index"]) for r in rows) == list(range(67))
    assert "SUCCEEDED" in p.job_result() and "200 in, 200 returned, 0 failed" in p.job_result()


def test_program_arguments_reach_sys_argv_with_unknown_flags_passed_through(tmp_path: Path) -> None:
    script = """
    import argparse, sys
    def run(mini_batch):
        parser = argparse.ArgumentParser()
        parser.add_argument("--model_name")
        args, unknown = parser.parse_known_args()
        return [f"{args.model_name}|{' '.join(unknown)}|{' '.join(sys.argv[1:])}"
                for _ in mini_batch]
    """
    write_job(
        tmp_path,
        script,
        files=2,
        mini_batch_size=1,
        program_arguments="--model_name resnet --error_threshold 5 --my_flag 'a b' --x=1",
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.output().splitlines()
    assert lines[0] == (
        "resnet|--error_threshold 5 --my_flag a b --x=1|"
        "--model_name resnet --error_threshold 5 --my_flag a b --x=1"
    )


def test_run_returning_a_dataframe_writes_space_separated_rows(tmp_path: Path) -> None:
    script = """
    import os
    import pandas as pd
    def run(mini_batch):
        return pd.DataFrame({"file": [os.path.basename(p) for p in mini_batch],
                             "size": [os.path.getsize(p) for p in mini_batch]})
    """
    write_job(tmp_path, script, files=12, mini_batch_size=5)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.output().splitlines()
    assert lines[0] == "f00000.txt 7" and lines[11] == "f00011.txt 8"
    assert len(lines) == 12


def test_summary_only_counts_without_writing(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=9, mini_batch_size=2, append_row=False)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (result.step_dir() / "outputs" / "out").exists()
    assert "5 total, 5 completed, 0 failed" in result.job_result()
    assert "9 in, 9 returned" in result.job_result()


def test_init_and_shutdown_run_once_per_worker(tmp_path: Path) -> None:
    script = """
    import os
    calls = []
    def init():
        calls.append("init")
    def run(mini_batch):
        return [f"{os.getpid()} {calls.count('init')}" for _ in mini_batch]
    def shutdown():
        print("shutdown", os.getpid())
    """
    write_job(tmp_path, script, files=30, mini_batch_size=1, concurrency=3)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert {line.split()[1] for line in result.output().splitlines()} == {"1"}
    stdout_logs = list((result.step_dir() / "logs" / "user" / "stdout" / "node000").glob("*.txt"))
    assert sum(p.read_text().count("shutdown") for p in stdout_logs) == 3


def test_mini_batch_failing_every_try_fails_the_job_with_exit_1(tmp_path: Path) -> None:
    script = """
    def run(mini_batch):
        if any(p.endswith("f00002.txt") for p in mini_batch):
            raise ValueError("bad file")
        return mini_batch
    """
    write_job(
        tmp_path,
        script,
        files=6,
        mini_batch_size=1,
        max_retries=1,
        extra_step="mini_batch_error_threshold: 0\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stderr
    assert (result.step_dir() / "logs" / "job_result.txt").exists(), (result.stdout, result.stderr)
    text = result.job_result()
    assert "FAILED" in text and "mini_batch_error_threshold 0" in text
    assert "f00002.txt" in text and "ValueError: bad file" in text


def test_entry_script_without_run_is_bad_input(tmp_path: Path) -> None:
    write_job(tmp_path, "def init():\n    pass\n")
    result = run_job(tmp_path)
    assert result.returncode == 2
    assert "entry.py" in result.stderr and "run(mini_batch)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (result.step_dir() / "outputs" / "out").exists()


def test_entry_script_with_syntax_error_is_bad_input(tmp_path: Path) -> None:
    write_job(tmp_path, "def run(mini_batch)\n    return mini_batch\n")
    result = run_job(tmp_path)
    assert result.returncode == 2
    assert "entry.py:1" in result.stderr and "syntax error" in result.stderr


def test_job_create_file_is_the_same_as_run(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=3, mini_batch_size=2)
    proc = run_cli("job", "create", "--file", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines() == [
        "f00000.txt",
        "f00001.txt",
        "f00002.txt",
    ]


def test_bundled_example_runs(tmp_path: Path) -> None:
    example = tmp_path / "word_count"
    shutil.copytree(REPO / "examples" / "word_count", example)
    proc = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=example)
    assert proc.returncode == 0, proc.stderr
    output = (example / "run" / "count_words" / "outputs" / "counts").read_text().splitlines()
    assert len(output) == 300
    assert [line.split(",")[0] for line in output] == [f"doc_{i:04d}.txt" for i in range(300)]
    assert "output:" in proc.stdout and "logs:" in proc.stdout
