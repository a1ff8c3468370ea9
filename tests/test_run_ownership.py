"""One owner per run folder, and a resume that sees a changed input or code (issue 8).

Real drivers in real processes: a first run is held inside run() on a marker file while the
test tries a second driver on the same folder, then released; drivers are SIGKILLed half
way (the entry script kills its parent) and resumed after the input or the code changed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RUN_TIMEOUT_S, run_cli, run_job, write_job

# KILL_AT: SIGKILL the driver at that mini-batch (once); BLOCK_AT: hold that mini-batch
# until the file MARKERS/release exists (once); FORK_AT: leave a grandchild behind (once)
# that lives until MARKERS/release exists, as a helper server a run() starts would.
SCRIPT = """
import os, signal, time
from azureml_user.parallel_run import EntryScript

MARKERS = os.environ["MARKERS"]
SUFFIX = ""

def once(tag):
    path = os.path.join(MARKERS, tag)
    if os.path.exists(path):
        return False
    open(path, "w").close()
    return True

def wait_for_release():
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(MARKERS, "release")) and time.monotonic() < deadline:
        time.sleep(0.02)

def run(mini_batch, context):
    i = context.minibatch_index
    if i == int(os.environ.get("FORK_AT", "-1")) and once("forked"):
        if os.fork() == 0:
            os.setsid()
            with open(os.path.join(MARKERS, "grandchild"), "w") as f:
                f.write(str(os.getpid()))
            wait_for_release()
            os._exit(0)
    if i == int(os.environ.get("KILL_AT", "-1")) and once("killed"):
        os.kill(os.getppid(), signal.SIGKILL)  # the driver
    if i == int(os.environ.get("BLOCK_AT", "-1")) and once("blocked"):
        wait_for_release()
    return [os.path.basename(p) + SUFFIX for p in mini_batch]
"""

N_FILES = 20
NAMES = [f"f{i:05d}.txt" for i in range(N_FILES)]


def _job(tmp: Path, **env: int) -> Path:
    (tmp / "markers").mkdir(exist_ok=True)
    extra = f"environment_variables:\n  MARKERS: {tmp / 'markers'}\n" + "".join(
        f"  {k}: '{v}'\n" for k, v in env.items()
    )
    return write_job(tmp, SCRIPT, files=N_FILES, mini_batch_size=1, extra_step=extra)


def _start(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "parajob", *args],
        cwd=tmp,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"parajob did not finish in {RUN_TIMEOUT_S}s\n{out}\n{err}")
    return proc.returncode, out, err


def _wait_for(path: Path, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended before {path.name} appeared:\n{_finish(proc)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear in {RUN_TIMEOUT_S}s")
        time.sleep(0.02)


def _output(tmp: Path, run: str = "run") -> list[str]:
    return (tmp / run / "step" / "outputs" / "out").read_text().splitlines()


def _kill_half_way(tmp: Path) -> None:
    """A first run whose driver is SIGKILLed at mini-batch 10."""
    _job(tmp, KILL_AT=10)
    first = run_job(tmp)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert not (tmp / "run" / "step" / "outputs" / "out").exists()


# --- one owner per run folder ---


@pytest.mark.parametrize("first_is_a_resume", [False, True])
def test_a_second_driver_on_a_running_folder_is_refused(
    tmp_path: Path, first_is_a_resume: bool
) -> None:
    if first_is_a_resume:  # two resumes at once
        _kill_half_way(tmp_path)
        # The resume holds the last mini-batch; told by the driver's environment, which the
        # workers inherit: a changed environment_variables would refuse the resume.
        first = _start(tmp_path, "run", "--resume", "run", env={"BLOCK_AT": "19"})
    else:
        _job(tmp_path, BLOCK_AT=7)
        first = _start(tmp_path, "run", "pipeline.yml", "--run-dir", "run")
    _wait_for(tmp_path / "markers" / "blocked", first)
    for second in (
        ("run", "--resume", "run"),
        ("run", "pipeline.yml", "--run-dir", "run"),
        ("job", "create", "--file", "pipeline.yml", "--run-dir", "run"),
    ):
        proc = run_cli(*second, cwd=tmp_path)
        assert proc.returncode == 2, (second, proc.stdout, proc.stderr)
        assert f"in use by pid {first.pid}" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    (tmp_path / "markers" / "release").touch()
    code, _out, err = _finish(first)
    assert code == 0, err
    assert _output(tmp_path) == NAMES  # the refused drivers touched nothing
    later = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    assert _output(tmp_path) == NAMES


def test_a_sigkilled_driver_frees_its_folder_even_if_a_grandchild_lives_on(tmp_path: Path) -> None:
    # The grandchild was forked by run() and outlives the workers: had the worker kept the
    # lock's file description open, the grandchild would hold the folder now.
    _job(tmp_path, FORK_AT=3, KILL_AT=10)
    try:
        first = run_job(tmp_path)
        assert first.returncode == -signal.SIGKILL, first.stderr
        resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert _output(tmp_path) == NAMES
    finally:
        (tmp_path / "markers" / "release").touch()


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "import os\ndef run(mini_batch):\n    return [os.path.basename(p) for p in mini_batch]\n",
        files=6,
        mini_batch_size=1,
    )
    # Start just after a second begins, so that on a slow machine the three still get the
    # same ./runs/pipeline-<second> name (the collision this guards against).
    while time.time() % 1 > 0.2:
        time.sleep(0.01)
    runs = [_start(tmp_path, "run", "pipeline.yml") for _ in range(3)]
    results = [_finish(p) for p in runs]
    assert [r[0] for r in results] == [0, 0, 0], [r[2] for r in results]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 3, folders
    for folder in folders:
        out = (folder / "step" / "outputs" / "out").read_text().splitlines()
        assert out == [f"f{i:05d}.txt" for i in range(6)]


def test_a_refused_run_leaves_no_empty_default_folder(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yml").write_text("type: pipeline\njobs: [\n")
    proc = run_cli("run", "pipeline.yml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --- a fingerprinted plan and code ---


def test_resume_after_an_input_file_was_renamed(tmp_path: Path) -> None:
    _kill_half_way(tmp_path)
    data = tmp_path / "data"
    (data / "f00003.txt").rename(data / "g00003.txt")  # same count; every later batch moves
    refused = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "mini-batch 3 changed since the run started" in refused.stderr
    assert str(data / "f00004.txt") in refused.stderr  # what mini-batch 3 reads now
    assert "--rerun-changed" in refused.stderr
    assert not (tmp_path / "run" / "step" / "outputs" / "out").exists()

    rerun = run_cli("run", "--resume", "run", "--rerun-changed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    fresh = run_cli("run", "pipeline.yml", "--run-dir", "fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    expected = sorted(p.name for p in data.iterdir())
    assert _output(tmp_path) == _output(tmp_path, "fresh") == expected
    # The journal now describes the new input: a later resume has nothing to refuse.
    again = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _output(tmp_path) == expected


@pytest.mark.parametrize("change", ["content", "mtime"])
def test_resume_after_an_input_file_was_modified_is_refused(tmp_path: Path, change: str) -> None:
    _kill_half_way(tmp_path)
    path = tmp_path / "data" / "f00004.txt"
    if change == "content":
        path.write_text("other content, longer\n")
    else:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    refused = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "mini-batch 4 changed since the run started" in refused.stderr
    assert str(path) in refused.stderr and "--rerun-changed" in refused.stderr
    assert "1 of 20 mini-batches changed" in refused.stderr
    rerun = run_cli("run", "--resume", "run", "--rerun-changed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert _output(tmp_path) == NAMES


def test_resume_after_the_entry_script_changed(tmp_path: Path) -> None:
    _kill_half_way(tmp_path)
    entry = tmp_path / "src" / "entry.py"
    entry.write_text(entry.read_text().replace('SUFFIX = ""', 'SUFFIX = " v2"'))
    refused = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "task.code file entry.py changed since the run started" in refused.stderr
    assert "--rerun-changed" in refused.stderr
    rerun = run_cli("run", "--resume", "run", "--rerun-changed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert _output(tmp_path) == [f"{n} v2" for n in NAMES]  # all rows from the new code


def test_caches_are_not_code_but_an_added_module_is(tmp_path: Path) -> None:
    _kill_half_way(tmp_path)
    src = tmp_path / "src"
    for cache in ("__pycache__/entry.cpython-311.pyc", "stale.pyc", ".git/HEAD"):
        (src / cache).parent.mkdir(exist_ok=True)
        (src / cache).write_bytes(b"\0compiled")
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (src / "helpers.py").write_text("X = 1\n")
    refused = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "task.code file helpers.py was added since the run started" in refused.stderr


def test_rerun_changed_needs_resume(tmp_path: Path) -> None:
    _job(tmp_path)
    proc = run_cli("run", "pipeline.yml", "--rerun-changed", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--rerun-changed goes with --resume" in proc.stderr


# --- tables and partitions: what a mini-batch reads is fingerprinted too ---

TABLE_SCRIPT = """
import os
def run(mini_batch):
    if isinstance(mini_batch, list):  # a folder partition: files
        return [os.path.basename(p) + ":" + open(p).read().strip() for p in mini_batch]
    return [" ".join(map(str, row)) for row in mini_batch.itertuples(index=False)]
"""

CSV_MLTABLE = """\
type: mltable
paths:
  - pattern: ./**/*.csv
transformations:
  - read_delimited:
      delimiter: ','
      encoding: ascii
      header: all_files_same_headers
"""

PATH_KEYS_MLTABLE = (
    CSV_MLTABLE
    + """\
      include_path_column: true
  - extract_columns_from_partition_format:
      partition_format: "{Store}/{file_name}.{extension}"
  - drop_columns: [Path, file_name, extension]
"""
)


def _csv(store: int) -> str:
    return "k,v\n" + "".join(f"{i % 3},{store * 100 + i}\n" for i in range(30))


@pytest.mark.parametrize(
    "kind", ["table", "table_by_path_keys", "table_by_column_keys", "folder_by_keys"]
)
def test_resume_after_a_table_or_partition_input_changed(tmp_path: Path, kind: str) -> None:
    from test_table_jobs import write_table_job

    files = {f"{s}/part.csv": _csv(s) for s in range(1, 4)}
    if kind == "folder_by_keys":
        files = {f"Store={s}/part.csv": _csv(s) for s in range(1, 4)}
        write_job(
            tmp_path,
            TABLE_SCRIPT,
            files=0,
            mini_batch_size=1,
            extra_step="partition_keys: [Store]\n",
        )
        for name, text in files.items():
            (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / name).write_text(text)
    else:
        mltable, extra = {
            "table": (CSV_MLTABLE, ""),
            "table_by_path_keys": (PATH_KEYS_MLTABLE, "partition_keys: [Store]\n"),
            "table_by_column_keys": (CSV_MLTABLE, "partition_keys: [k]\n"),
        }[kind]
        write_table_job(
            tmp_path,
            mltable,
            files,
            TABLE_SCRIPT,
            extra_step=extra,
            mini_batch_size=None if extra else "10kb",
        )
    first = run_job(tmp_path)
    assert first.returncode == 0, first.stderr
    changed = next((tmp_path / "data").glob("*2/part.csv"))
    with changed.open("a") as f:
        f.write("1,999\n")
    refused = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "changed since the run started" in refused.stderr
    assert "--rerun-changed" in refused.stderr
    if kind != "table_by_column_keys":  # a data-column partition may hold rows of any file
        assert str(changed) in refused.stderr, refused.stderr
    rerun = run_cli("run", "--resume", "run", "--rerun-changed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    fresh = run_cli("run", "pipeline.yml", "--run-dir", "fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert _output(tmp_path) == _output(tmp_path, "fresh")
    assert any("999" in line for line in _output(tmp_path))  # the new row is there


TWO_STEPS = """\
type: pipeline
jobs:
  first:
    type: parallel
    inputs:
      data: {type: uri_folder, path: ./data}
    outputs:
      rows: {type: uri_folder}
    input_data: ${{inputs.data}}
    mini_batch_size: "1"
    environment_variables: {MARKERS: MARKERS_DIR}
    task: {type: run_function, code: ./src, entry_script: entry.py,
           append_row_to: "${{outputs.rows}}"}
  step:
    type: parallel
    inputs:
      rows: ${{parent.jobs.first.outputs.rows}}
    outputs:
      out: {type: uri_file}
    input_data: ${{inputs.rows}}
    mini_batch_size: "1"
    environment_variables: {MARKERS: MARKERS_DIR, KILL_AT: "0"}
    task: {type: run_function, code: ./src, entry_script: entry.py,
           append_row_to: "${{outputs.out}}"}
"""


def test_resume_in_a_later_step_does_not_see_the_earlier_steps_output_as_changed(
    tmp_path: Path,
) -> None:
    # The first step is finished again on resume (all its mini-batches journalled): its
    # output must keep its identity, or the second step would be refused as "changed".
    _job(tmp_path)
    (tmp_path / "pipeline.yml").write_text(
        TWO_STEPS.replace("MARKERS_DIR", str(tmp_path / "markers"))
    )
    first = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _output(tmp_path) == ["parallel_run_step.txt"]


def test_a_run_folder_inside_the_code_folder_is_not_part_of_the_code(tmp_path: Path) -> None:
    _job(tmp_path, KILL_AT=10)  # code: ./src, and the run folder goes in it (code: ./ style)
    first = run_cli("run", "pipeline.yml", "--run-dir", "src/run", cwd=tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr
    resumed = run_cli("run", "--resume", "src/run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _output(tmp_path, "src/run") == NAMES


def test_the_listing_gives_the_mtimes_its_stat_saw(tmp_path: Path) -> None:
    from conftest import make_files

    from parajob import _core

    paths = make_files(tmp_path, 5, nested=True)
    os.utime(paths[2], ns=(0, 1_234_567_891_234_567_891))
    listing = _core.list_files(tmp_path)
    assert listing.mtimes_ns().tolist() == [os.stat(p).st_mtime_ns for p in paths]
