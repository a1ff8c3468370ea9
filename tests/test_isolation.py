"""Poison-item isolation (issue 14), end to end with real processes.

``--isolate_failures N`` (program argument; ``parajob run --isolate-failures N``;
``parajob.run(..., isolate_failures=N)``): a mini-batch whose retries are spent is bisected
into sub-batches (index >= the step's mini-batch count, one try each) until each failing
piece is one item, which is quarantined (logs/quarantine.csv, job_result.json); the good
pieces' rows reach the output once, in order.

    64-file mini-batches x 1/2/3 poison files x raise / segfault / os._exit / hang / None
        -> every good row once, in order; quarantine.csv == exactly the poison files;
           sub-batch attempts <= 2 x N x ceil(log2(size)) per failing mini-batch
    a table with one bad row             -> that mini-batch and that row's index quarantined
    partitions                           -> never split: a failing one fails as without
    a script failing on everything       -> stops splitting, fails as without isolation
    driver SIGKILL mid-bisection, --resume -> the uninterrupted run's output, byte for byte
    isolation off (default)              -> one poison fails its whole mini-batch, as before
    --skip-items quarantine.csv          -> the poison files never reach run()
    accounting                           -> error_threshold / mini_batch_error_threshold
    the Python API, the CLI override, Dask's refusal, 1-file and 3-file mini-batches
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import JobRun, kills_driver_at, run_cli, run_job, write_job

import parajob

BATCH = 64
QUARANTINE_HEADER = ["step", "mini_batch", "item_index", "item", "status", "error", "log_file"]

# run() fails on the files named in $POISON (comma-separated basenames), as $KIND says;
# every other file gives one row, its name.
POISON_SCRIPT = """
import os, signal, sys, time
POISON = {n for n in os.environ.get("POISON", "").split(",") if n}
KIND = os.environ.get("KIND", "raise")

def run(mini_batch):
    for p in mini_batch:
        name = os.path.basename(p)
        if name in POISON:
            if KIND == "raise":
                raise RuntimeError(f"poison {name}")
            if KIND == "segfault":
                import ctypes; ctypes.string_at(0)
            if KIND == "exit":
                os._exit(3)
            if KIND == "hang":
                time.sleep(3600)
            if KIND == "none":
                return None
    return [os.path.basename(p) for p in mini_batch]
"""

STATUS = {
    "raise": "raised",
    "segfault": "crashed",
    "exit": "crashed",
    "hang": "timed_out",
    "none": "wrong_return_type",
}
ERROR = {  # a fragment of quarantine.csv's error column per kind
    "raise": "poison",
    "segfault": "SIGSEGV",
    "exit": "code 3",
    "hang": "timeout",
    "none": "NoneType",
}


def name(i: int) -> str:
    return f"f{i:05d}.txt"


def env_lines(**variables: str) -> str:
    body = "".join(f"  {k}: '{v}'\n" for k, v in variables.items())
    return f"environment_variables:\n{body}"


def poison_job(
    tmp: Path,
    files: int,
    poisons: list[int],
    *,
    kind: str = "raise",
    isolate: int | None = 4,
    mini_batch_size: int = BATCH,
    max_retries: int = 0,
    timeout: int = 60,
    extra: str = "",
    script: str = POISON_SCRIPT,
    more_env: dict[str, str] | None = None,
) -> Path:
    variables = {"POISON": ",".join(name(i) for i in poisons), "KIND": kind, **(more_env or {})}
    args = f"--isolate_failures {isolate}" if isolate is not None else ""
    return write_job(
        tmp,
        script,
        files=files,
        mini_batch_size=mini_batch_size,
        concurrency=2,
        max_retries=max_retries,
        timeout=timeout,
        program_arguments=args,
        extra_step=env_lines(**variables) + extra,
    )


def attempts(run_dir: Path, step: str = "step") -> list[dict[str, str]]:
    path = run_dir / step / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def quarantine_path(run_dir: Path, step: str = "step") -> Path:
    return run_dir / step / "logs" / "quarantine.csv"


def quarantine(run_dir: Path, step: str = "step") -> list[dict[str, str]]:
    path = quarantine_path(run_dir, step)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert reader.fieldnames == QUARANTINE_HEADER, reader.fieldnames
    return rows


def job_json(run_dir: Path, step: str = "step") -> dict[str, Any]:
    return json.loads((run_dir / step / "logs" / "job_result.json").read_text(encoding="utf-8"))


def output_lines(run_dir: Path, step: str = "step") -> list[str]:
    path = run_dir / step / "outputs" / "out"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def sub_batch_rows(run_dir: Path, total: int) -> list[dict[str, str]]:
    return [row for row in attempts(run_dir) if int(row["index"]) >= total]


def budget(sizes: list[int], n: int) -> int:
    """The documented bound on sub-batch attempts, summed over the failing mini-batches."""
    return sum(2 * n * math.ceil(math.log2(size)) for size in sizes if size > 1)


def resolve_log(run_dir: Path, value: str) -> Path | None:
    """quarantine.csv's log_file, absolute or relative to the run / step / logs folder."""
    for base in (Path("/"), run_dir, run_dir / "step", run_dir / "step" / "logs"):
        path = base / value
        if value and path.is_file():
            return path
    return None


def check_isolated(
    result: JobRun, files: int, poisons: list[int], kind: str, n: int, max_retries: int
) -> None:
    """What every isolated run of POISON_SCRIPT must show (the acceptance's list)."""
    run_dir = result.run_dir
    total = math.ceil(files / BATCH)
    poisoned = sorted({i // BATCH for i in poisons})
    sizes = [min(BATCH, files - b * BATCH) for b in poisoned]
    explain = f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, explain

    # Every good file's row exactly once, in the original order.
    good = [name(i) for i in range(files) if i not in poisons]
    assert output_lines(run_dir) == good

    # quarantine.csv: exactly the poison files, with their original mini-batch and index.
    rows = quarantine(run_dir)
    assert sorted(Path(r["item"]).name for r in rows) == sorted(name(i) for i in poisons), rows
    for row in rows:
        i = int(Path(row["item"]).stem[1:])
        assert row["step"] == "step", row
        assert (int(row["mini_batch"]), int(row["item_index"])) == (i // BATCH, i % BATCH), row
        assert Path(row["item"]).is_absolute() and Path(row["item"]).is_file(), row
        assert row["status"] == STATUS[kind], row
        assert ERROR[kind] in row["error"], row
        assert "\n" not in row["error"], row
        log = resolve_log(run_dir, row["log_file"])
        assert log is not None, f"log_file {row['log_file']!r} is no file"
        if kind == "raise":  # the worker log with the traceback
            assert f"poison {Path(row['item']).name}" in log.read_text(errors="replace"), log

    # job_result.json / .txt / the terminal summary.
    data = job_json(run_dir)
    assert data["quarantined_items"] == len(poisons)
    listed = sorted(
        (q["mini_batch"], q["item_index"], Path(q["item"]).name, q["status"])
        for q in data["quarantined"]
    )
    first_lines = {r["item"]: r["error"] for r in rows}
    for q in data["quarantined"]:  # the JSON has the whole error text, the CSV one line of it
        assert first_lines[q["item"]] in q["error"], (q, first_lines)
    assert listed == sorted((i // BATCH, i % BATCH, name(i), STATUS[kind]) for i in poisons)
    assert data["total_batches"] == total
    assert data["failed_batches"] == len(poisoned)  # failed iff it ends with a quarantined item
    assert data["completed_batches"] == total - len(poisoned)
    assert data["failed_items"] == len(poisons)
    assert data["items_out"] == files - len(poisons)
    text = result.job_result()
    line = re.compile(rf"^quarantined: +{len(poisons)} item\(s\): \S", re.M)
    assert line.search(text), text  # aligned with the other labels
    assert line.search(result.stdout + result.stderr), result.stdout + result.stderr
    named = line.search(text)
    assert named is not None
    shown = text[named.start() : text.index("\n", named.start())]
    assert all(name(i) in shown for i in poisons), shown  # the first three (here: all)

    # The attempts: each poisoned mini-batch used its tries, then its sub-batches one each.
    log = attempts(run_dir)
    for b in poisoned:
        tries = [r for r in log if int(r["index"]) == b]
        assert len(tries) == max_retries + 1 and all(r["status"] == STATUS[kind] for r in tries)
    subs = [r for r in log if int(r["index"]) >= total]
    assert len(subs) <= budget(sizes, n), (len(subs), budget(sizes, n))
    indexes = [int(r["index"]) for r in subs]
    assert len(indexes) == len(set(indexes)), "a sub-batch was tried twice"
    failed_singles = [r for r in subs if r["items_in"] == "1" and r["status"] == STATUS[kind]]
    assert len(failed_singles) == len(poisons)
    assert {r["status"] for r in subs} <= {"succeeded", STATUS[kind]}
    accepted = sum(int(r["items_out"]) for r in subs if r["status"] == "succeeded")
    assert accepted == sum(sizes) - len(poisons)  # the good items of the bisected ones


# (kind, files, poison file indexes, max_retries): 192 files = 3 x 64; 130 = 64 + 64 + 2.
CASES = [
    ("raise", 192, [70], 1),
    ("raise", 130, [3, 129], 0),  # one in a 64-file mini-batch, one in the 2-file last one
    ("raise", 192, [64, 100, 127], 1),  # first, middle and last of mini-batch 1
    ("raise", 130, [10, 11, 12], 0),  # three neighbours
    ("segfault", 130, [40], 0),
    ("segfault", 192, [65, 126], 0),
    ("exit", 192, [0, 191], 0),  # first of the first, last of the last mini-batch
    ("exit", 130, [20, 21, 90], 0),
    ("hang", 130, [33], 0),
    ("none", 130, [5, 100], 0),
]


@pytest.mark.parametrize(
    "kind,files,poisons,max_retries",
    CASES,
    ids=[f"{k}-{f}files-{len(p)}poison" for k, f, p, _ in CASES],
)
def test_poison_files_are_quarantined_and_the_rest_is_kept(
    tmp_path: Path, kind: str, files: int, poisons: list[int], max_retries: int
) -> None:
    timeout = 2 if kind == "hang" else 60
    poison_job(tmp_path, files, poisons, kind=kind, max_retries=max_retries, timeout=timeout)
    result = run_job(tmp_path)
    check_isolated(result, files, poisons, kind, 4, max_retries)


# ---- odd shapes ---------------------------------------------------------------------------


def test_one_file_mini_batches_quarantine_at_once_without_a_split(tmp_path: Path) -> None:
    poison_job(tmp_path, 10, [4], isolate=2, mini_batch_size=1, max_retries=1)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output_lines(result.run_dir) == [name(i) for i in range(10) if i != 4]
    rows = quarantine(result.run_dir)
    assert [(r["mini_batch"], r["item_index"], Path(r["item"]).name) for r in rows] == [
        ("4", "0", name(4))
    ]
    assert sub_batch_rows(result.run_dir, 10) == []  # a single item is not split
    data = job_json(result.run_dir)
    assert (data["failed_batches"], data["failed_items"], data["quarantined_items"]) == (1, 1, 1)
    assert data["completed_batches"] == 9


def test_a_three_file_mini_batch(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        POISON_SCRIPT,
        files=7,
        mini_batch_size=3,
        max_retries=0,
        program_arguments="--isolate_failures 1",
        extra_step=env_lines(POISON=name(4), KIND="raise"),
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output_lines(result.run_dir) == [name(i) for i in range(7) if i != 4]
    rows = quarantine(result.run_dir)
    assert [(r["mini_batch"], r["item_index"], Path(r["item"]).name) for r in rows] == [
        ("1", "1", name(4))
    ]
    subs = sub_batch_rows(result.run_dir, 3)
    assert 0 < len(subs) <= budget([3], 1)
    assert sum(int(r["items_out"]) for r in subs if r["status"] == "succeeded") == 2


# ---- tables and partitions ----------------------------------------------------------------


def table_job(
    tmp: Path,
    script: str,
    csv_text: str,
    *,
    mini_batch_size: str | None = "2kb",
    args: str = "",
    extra: str = "",
) -> Path:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "MLTable").write_text(
        "type: mltable\npaths:\n  - file: ./rows.csv\ntransformations:\n"
        "  - read_delimited:\n      delimiter: ','\n      encoding: ascii\n"
        "      header: all_files_same_headers\n",
        encoding="utf-8",
    )
    (data / "rows.csv").write_text(csv_text, encoding="utf-8")
    (tmp / "src").mkdir(exist_ok=True)
    (tmp / "src" / "entry.py").write_text(textwrap.dedent(script), encoding="utf-8")
    size = f'    mini_batch_size: "{mini_batch_size}"\n' if mini_batch_size else ""
    pipeline = tmp / "pipeline.yml"
    pipeline.write_text(
        "type: pipeline\njobs:\n  step:\n    type: parallel\n"
        "    inputs:\n      data: {type: mltable, path: ./data, mode: direct}\n"
        "    outputs:\n      out: {type: uri_file}\n"
        "    input_data: ${{inputs.data}}\n"
        f"{size}"
        "    max_concurrency_per_instance: 2\n"
        "    retry_settings: {max_retries: 0, timeout: 60}\n"
        f"{textwrap.indent(extra, '    ')}"
        "    task:\n      type: run_function\n      code: ./src\n      entry_script: entry.py\n"
        f'      program_arguments: "{args}"\n'
        "      append_row_to: ${{outputs.out}}\n",
        encoding="utf-8",
    )
    return pipeline


TABLE_ROWS = 600
BAD_ROW = 350
TABLE_CSV = "id,value,flag\n" + "".join(
    f"{i},{i * 7 % 1000}.5,{'bad' if i == BAD_ROW else 'ok'}\n" for i in range(TABLE_ROWS)
)


def test_a_table_mini_batch_with_one_bad_row_quarantines_that_row(tmp_path: Path) -> None:
    # Where the bad row is: a run without the fault tells its mini-batch and position.
    where = """
    def run(mini_batch, context):
        return [f"{context.minibatch_index} {k} {i}" for k, i in enumerate(mini_batch["id"])]
    """
    table_job(tmp_path / "plain", where, TABLE_CSV)
    plain = run_job(tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    found = {int(i): (int(b), int(k)) for b, k, i in map(str.split, output_lines(plain.run_dir))}
    assert sorted(found) == list(range(TABLE_ROWS))
    total = job_json(plain.run_dir)["total_batches"]
    assert total >= 3, "2kb should cut the table into several mini-batches"
    batch, position = found[BAD_ROW]

    bad = """
    def run(mini_batch):
        if (mini_batch["flag"] == "bad").any():
            raise ValueError("a bad row")
        return [str(i) for i in mini_batch["id"]]
    """
    table_job(tmp_path / "iso", bad, TABLE_CSV, args="--isolate_failures 2")
    result = run_job(tmp_path / "iso")
    assert result.returncode == 0, result.stderr
    assert output_lines(result.run_dir) == [str(i) for i in range(TABLE_ROWS) if i != BAD_ROW]
    rows = quarantine(result.run_dir)
    assert len(rows) == 1, rows
    row = rows[0]
    assert (int(row["mini_batch"]), int(row["item_index"])) == (batch, position), row
    assert row["item"].startswith(f"row {position} of mini-batch {batch} ("), row
    assert "rows.csv" in row["item"] and row["status"] == "raised", row
    assert "a bad row" in row["error"], row
    data = job_json(result.run_dir)
    assert (data["quarantined_items"], data["failed_items"], data["failed_batches"]) == (1, 1, 1)
    assert data["items_out"] == TABLE_ROWS - 1
    size = sum(1 for b, _ in found.values() if b == batch)
    subs = sub_batch_rows(result.run_dir, total)
    assert 0 < len(subs) <= budget([size], 2)


def test_partitions_are_never_split(tmp_path: Path) -> None:
    rows = "g,v\n" + "".join(f"{'abc'[i % 3]},{i}\n" for i in range(90))
    script = """
    def run(mini_batch, context):
        if context.partition_key_value["g"] == "b":
            raise ValueError("partition b")
        return [str(v) for v in mini_batch["v"]]
    """
    table_job(
        tmp_path,
        script,
        rows,
        mini_batch_size=None,
        args="--isolate_failures 2",
        extra="partition_keys: [g]\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(map(int, output_lines(result.run_dir))) == [i for i in range(90) if i % 3 != 1]
    data = job_json(result.run_dir)
    assert data["total_batches"] == 3
    assert sub_batch_rows(result.run_dir, 3) == []
    assert (data["failed_batches"], data["failed_items"]) == (1, 30)
    assert data.get("quarantined_items", 0) == 0
    path = quarantine_path(result.run_dir)
    assert not path.exists() or quarantine(result.run_dir) == []


# ---- a script that fails on everything, and too many poisons ------------------------------

ALL_FAIL = """
def run(mini_batch):
    raise RuntimeError("everything is poison")
"""


def test_a_script_failing_on_every_item_fails_as_without_isolation(tmp_path: Path) -> None:
    poison_job(tmp_path / "off", 192, [], isolate=None, script=ALL_FAIL)
    off = run_job(tmp_path / "off")
    poison_job(tmp_path / "on", 192, [], isolate=2, script=ALL_FAIL)
    on = run_job(tmp_path / "on")
    assert on.returncode == off.returncode, on.stderr
    assert output_lines(on.run_dir) == [] == output_lines(off.run_dir)
    keys = (
        "total_batches",
        "completed_batches",
        "failed_batches",
        "items_in",
        "items_out",
        "failed_items",
    )
    with_isolation, without = job_json(on.run_dir), job_json(off.run_dir)
    assert {k: with_isolation[k] for k in keys} == {k: without[k] for k in keys}
    assert (without["failed_batches"], without["failed_items"]) == (3, 192)
    assert with_isolation.get("quarantined_items", 0) == 0
    assert not quarantine_path(on.run_dir).exists() or quarantine(on.run_dir) == []
    subs = sub_batch_rows(on.run_dir, 3)
    assert len(subs) <= budget([64, 64, 64], 2), len(subs)
    assert all(r["status"] == "raised" for r in subs)


def test_more_poisons_than_allowed_fail_that_mini_batch_only(tmp_path: Path) -> None:
    # Mini-batch 0: 5 poisons, one per quarter and the last (more than N = 2 fail at depth 2):
    # failed as without isolation. Mini-batch 2: one poison, quarantined.
    poisons = [0, 16, 32, 48, 63, 150]
    poison_job(tmp_path, 192, poisons, isolate=2)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output_lines(result.run_dir) == [name(i) for i in range(64, 192) if i != 150]
    rows = quarantine(result.run_dir)
    assert [(r["mini_batch"], r["item_index"], Path(r["item"]).name) for r in rows] == [
        ("2", str(150 - 128), name(150))
    ]
    data = job_json(result.run_dir)
    assert data["failed_batches"] == 2 and data["completed_batches"] == 1
    assert data["failed_items"] == 64 + 1 and data["quarantined_items"] == 1
    assert data["items_out"] == 192 - 65
    assert len(sub_batch_rows(result.run_dir, 3)) <= budget([64, 64], 2)


def test_a_mini_batch_more_than_half_quarantined_fails_as_a_whole(tmp_path: Path) -> None:
    # docs/contract.md §4.6: 2 of a 3-file mini-batch's items would end quarantined (within
    # N = 4): it fails as it would without isolation; the other mini-batches are untouched.
    poison_job(tmp_path, 9, [3, 5], isolate=4, mini_batch_size=3)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output_lines(result.run_dir) == [name(i) for i in range(9) if not 3 <= i < 6]
    data = job_json(result.run_dir)
    assert (data["failed_batches"], data["failed_items"], data["completed_batches"]) == (1, 3, 2)
    assert data["quarantined_items"] == 0 and data["quarantined"] == []
    assert not quarantine_path(result.run_dir).exists() or quarantine(result.run_dir) == []
    assert len(sub_batch_rows(result.run_dir, 3)) <= budget([3], 4)


# ---- driver SIGKILL in the middle of a bisection, then --resume ---------------------------

# POISON_SCRIPT, plus: the first sub-batch of KILL_SIZE items SIGKILLs the driver (once:
# a marker file; the uninterrupted run has the marker from the start).
KILLS_IN_BISECTION = POISON_SCRIPT.replace(
    "def run(mini_batch):\n",
    "def run(mini_batch):\n"
    "    mark = os.path.join(os.environ['MARKERS'], 'killed')\n"
    "    if len(mini_batch) == int(os.environ['KILL_SIZE']) and not os.path.exists(mark):\n"
    "        open(mark, 'w').close()\n"
    "        os.kill(os.getppid(), signal.SIGKILL)\n"
    "        time.sleep(60)\n",
)


@pytest.mark.parametrize(
    "kill_size,via",
    [(32, "yaml"), (8, "yaml"), (8, "cli")],
    ids=["at-32-yaml", "at-8-yaml", "at-8-cli"],
)
def test_driver_killed_mid_bisection_then_resumed_gives_the_uninterrupted_output(
    tmp_path: Path, kill_size: int, via: str
) -> None:
    """via yaml: --isolate_failures 4 in program_arguments; via cli: `parajob run
    --isolate-failures 4` (the YAML has no flag). Either way the resume is the command
    parajob documents and prints, `parajob run --resume RUN_DIR`."""
    poisons = [70, 100, 150]
    runs = {}
    for label in ("reference", "killed"):
        folder = tmp_path / label
        markers = folder / "markers"
        markers.mkdir(parents=True)
        if label == "reference":
            (markers / "killed").touch()
        more = {"MARKERS": str(markers), "KILL_SIZE": str(kill_size)}
        isolate = 4 if via == "yaml" else None
        poison_job(folder, 192, poisons, isolate=isolate, script=KILLS_IN_BISECTION, more_env=more)
        flag = ("--isolate-failures", "4") if via == "cli" else ()
        proc = run_cli("run", "pipeline.yml", "--run-dir", "run", *flag, cwd=folder)
        runs[label] = JobRun(proc.returncode, proc.stdout, proc.stderr, folder / "run")
    reference, killed = runs["reference"], runs["killed"]
    check_isolated(reference, 192, poisons, "raise", 4, 0)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "killed" / "markers" / "killed").exists()
    assert not (killed.step_dir() / "outputs" / "out").exists()  # nothing half-written

    resumed = run_cli("run", "--resume", str(killed.run_dir), cwd=tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = "step/outputs/out"
    assert (killed.run_dir / out).read_bytes() == (reference.run_dir / out).read_bytes()

    def items(run_dir: Path) -> list[tuple[str, ...]]:
        return sorted(
            (r["step"], r["mini_batch"], r["item_index"], Path(r["item"]).name, r["status"])
            for r in quarantine(run_dir)
        )

    assert items(killed.run_dir) == items(reference.run_dir)
    assert len(items(killed.run_dir)) == len(poisons)
    keys = (
        "total_batches",
        "completed_batches",
        "failed_batches",
        "items_out",
        "failed_items",
        "quarantined_items",
    )
    after, expected = job_json(killed.run_dir), job_json(reference.run_dir)
    assert {k: after[k] for k in keys} == {k: expected[k] for k in keys}


# ---- isolation off ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [None, 0], ids=["default", "zero"])
def test_without_isolation_one_poison_fails_its_whole_mini_batch(
    tmp_path: Path, args: int | None
) -> None:
    poison_job(tmp_path, 192, [70], isolate=args, max_retries=1)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output_lines(result.run_dir) == [name(i) for i in range(192) if not 64 <= i < 128]
    data = job_json(result.run_dir)
    assert (data["failed_batches"], data["failed_items"], data["completed_batches"]) == (1, 64, 2)
    # As built: no quarantine.csv at all, an empty list in job_result.json, no line in .txt.
    assert data["quarantined_items"] == 0 and data["quarantined"] == []
    assert not quarantine_path(result.run_dir).exists()
    assert "quarantin" not in result.job_result() + result.stdout + result.stderr
    log = attempts(result.run_dir)
    assert all(int(r["index"]) < 3 for r in log)  # no sub-batch
    assert len([r for r in log if r["index"] == "1"]) == 2  # its two tries, as before


# ---- --skip-items -------------------------------------------------------------------------


def test_skip_items_leaves_the_quarantined_files_out_of_a_fresh_run(tmp_path: Path) -> None:
    poisons = [5, 70, 71]
    poison_job(tmp_path, 130, poisons, isolate=3)
    first = run_job(tmp_path)
    assert first.returncode == 0, first.stderr
    listed = quarantine_path(first.run_dir)
    assert len(quarantine(first.run_dir)) == 3

    # The second run: no isolation, no error allowed: a poison given to run() fails it.
    poison_job(
        tmp_path,
        130,
        poisons,
        isolate=None,
        extra="error_threshold: 0\nmini_batch_error_threshold: 0\n",
    )
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", "second", "--skip-items", str(listed), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = tmp_path / "second"
    assert output_lines(second) == [name(i) for i in range(130) if i not in poisons]
    data = job_json(second)
    assert data["failed_items"] == 0 and data["failed_batches"] == 0
    assert data["items_out"] == 127
    assert all(r["status"] == "succeeded" for r in attempts(second))


def test_skip_items_through_the_python_api(tmp_path: Path) -> None:
    poison_job(tmp_path, 130, [40], isolate=2)
    first = run_job(tmp_path)
    assert first.returncode == 0, first.stderr
    poison_job(tmp_path, 130, [40], isolate=None, extra="error_threshold: 0\n")
    result = parajob.run(
        tmp_path / "pipeline.yml",
        run_dir=tmp_path / "second",
        skip_items=quarantine_path(first.run_dir),
    )
    assert result.succeeded, result.steps[0].reason
    assert output_lines(tmp_path / "second") == [name(i) for i in range(130) if i != 40]


def test_skip_items_on_a_table_leaves_that_row_out(tmp_path: Path) -> None:
    bad = """
    def run(mini_batch):
        if (mini_batch["flag"] == "bad").any():
            raise ValueError("a bad row")
        return [str(i) for i in mini_batch["id"]]
    """
    table_job(tmp_path, bad, TABLE_CSV, args="--isolate_failures 2")
    first = run_job(tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(quarantine(first.run_dir)) == 1
    table_job(tmp_path, bad, TABLE_CSV, extra="error_threshold: 0\n")  # no isolation now
    proc = run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        "second",
        "--skip-items",
        str(quarantine_path(first.run_dir)),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert output_lines(tmp_path / "second") == [str(i) for i in range(TABLE_ROWS) if i != BAD_ROW]
    data = job_json(tmp_path / "second")
    assert data["failed_items"] == 0 and data["items_out"] == TABLE_ROWS - 1


def test_skip_items_warns_about_an_item_the_input_does_not_have(tmp_path: Path) -> None:
    poison_job(tmp_path, 10, [], isolate=None)
    listed = tmp_path / "quarantine.csv"
    missing = tmp_path / "data" / "gone.txt"
    listed.write_text(
        ",".join(QUARANTINE_HEADER) + "\n"
        f"step,0,3,{missing},raised,RuntimeError: x,\n"
        f"step,0,4,{tmp_path / 'data' / name(4)},raised,RuntimeError: x,\n"
        f"other,0,5,{tmp_path / 'data' / name(5)},raised,RuntimeError: x,\n",  # another step's
        encoding="utf-8",
    )
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", "run", "--skip-items", str(listed), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gone.txt" in proc.stderr, proc.stderr
    assert output_lines(tmp_path / "run") == [name(i) for i in range(10) if i != 4]


# A run stopped by Ctrl-C (SIGINT from run() of mini-batch 3) with --skip-items.
INTERRUPTS_AT_3 = kills_driver_at(3).replace("signal.SIGKILL", "signal.SIGINT")


@pytest.mark.parametrize("how", ["printed", "explicit"])
def test_a_resume_skips_the_same_items(tmp_path: Path, how: str) -> None:
    """printed: the resume command parajob prints for the interrupted run, as printed;
    explicit: `--resume RUN --skip-items FILE` (docs/contract.md §4.6: a resume must skip
    the same items)."""
    listed = tmp_path / "quarantine.csv"
    skipped = [2, 9, 10]
    listed.write_text(
        ",".join(QUARANTINE_HEADER)
        + "\n"
        + "".join(f"step,0,0,{tmp_path / 'data' / name(i)},raised,x,\n" for i in skipped),
        encoding="utf-8",
    )
    write_job(tmp_path, INTERRUPTS_AT_3, files=30, mini_batch_size=2, max_retries=0)
    args = ("run", "pipeline.yml", "--run-dir", "run", "--skip-items", str(listed))
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 130, first.stdout + first.stderr
    printed = re.search(r"resume with: (parajob run --resume .*)$", first.stdout, re.M)
    assert printed is not None, first.stdout
    if how == "printed":
        command = shlex.split(printed.group(1))[1:]
    else:
        command = ["run", "--resume", "run", "--skip-items", str(listed)]
    resumed = run_cli(*command, cwd=tmp_path)
    assert resumed.returncode == 0, f"{command}: " + resumed.stdout + resumed.stderr
    assert output_lines(tmp_path / "run") == [name(i) for i in range(30) if i not in skipped]


# ---- accounting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting,exit_code",
    [
        ("error_threshold: 2", 1),  # 3 quarantined items are 3 failed items
        ("error_threshold: 3", 0),
        ("mini_batch_error_threshold: 1", 1),  # 2 mini-batches end with a quarantined item
        ("mini_batch_error_threshold: 2", 0),
    ],
)
def test_quarantined_items_count_against_the_thresholds(
    tmp_path: Path, setting: str, exit_code: int
) -> None:
    poison_job(tmp_path, 192, [10, 11, 130], isolate=4, extra=setting + "\n")
    result = run_job(tmp_path)
    assert result.returncode == exit_code, result.stdout + result.stderr
    reason = result.job_result().splitlines()[2]
    assert (setting.split(":")[0] in reason) == (exit_code == 1), reason
    if exit_code == 0:
        data = job_json(result.run_dir)
        assert (data["failed_items"], data["failed_batches"], data["quarantined_items"]) == (
            3,
            2,
            3,
        )


# run() fails any mini-batch of more than 32 files holding f00070.txt: both halves succeed.
TOO_BIG = """
import os

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if len(names) > 32 and "f00070.txt" in names:
        raise MemoryError("too big")
    return names
"""


def test_a_mini_batch_whose_halves_all_succeed_counts_as_completed(tmp_path: Path) -> None:
    poison_job(
        tmp_path,
        192,
        [],
        isolate=2,
        script=TOO_BIG,
        max_retries=1,
        extra="mini_batch_error_threshold: 0\nerror_threshold: 0\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert output_lines(result.run_dir) == [name(i) for i in range(192)]
    data = job_json(result.run_dir)
    assert (data["completed_batches"], data["failed_batches"], data["failed_items"]) == (3, 0, 0)
    assert data.get("quarantined_items", 0) == 0
    assert not quarantine_path(result.run_dir).exists() or quarantine(result.run_dir) == []
    subs = sub_batch_rows(result.run_dir, 3)
    assert sorted((r["items_in"], r["status"]) for r in subs) == [("32", "succeeded")] * 2


# ---- the Python API, the CLI override, Dask -----------------------------------------------


def test_the_python_api_isolates_and_reports_the_quarantine(tmp_path: Path) -> None:
    poison_job(tmp_path, 130, [7, 99], isolate=None)  # the YAML has no flag: the call's
    result = parajob.run(tmp_path / "pipeline.yml", run_dir=tmp_path / "run", isolate_failures=2)
    assert isinstance(result, parajob.RunResult)
    assert result.succeeded, result.steps[0].reason
    step = result.steps[0]
    assert (step.failed_items, step.failed_batches, step.items_out) == (2, 2, 128)
    data = job_json(tmp_path / "run")
    assert data["quarantined_items"] == 2
    assert sorted(Path(q["item"]).name for q in data["quarantined"]) == [name(7), name(99)]
    if hasattr(step, "quarantined"):  # the same list on the StepResult, where it has one
        assert sorted(
            Path(q["item"] if isinstance(q, dict) else q.item).name for q in step.quarantined
        ) == [name(7), name(99)]
    assert output_lines(tmp_path / "run") == [name(i) for i in range(130) if i not in (7, 99)]


def test_the_cli_flag_overrides_the_yaml(tmp_path: Path) -> None:
    poison_job(tmp_path, 130, [80], isolate=0)
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", "on", "--isolate-failures", "2", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert [Path(r["item"]).name for r in quarantine(tmp_path / "on")] == [name(80)]
    assert len(output_lines(tmp_path / "on")) == 129

    poison_job(tmp_path, 130, [80], isolate=4)
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", "off", "--isolate-failures", "0", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert output_lines(tmp_path / "off") == [name(i) for i in range(130) if not 64 <= i < 128]
    assert not quarantine_path(tmp_path / "off").exists() or quarantine(tmp_path / "off") == []


def test_isolation_is_refused_on_a_dask_compute(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from dask_cluster import DaskCluster

    cluster = DaskCluster.start(tmp_path / "dask", 1)
    try:
        compute = f"cpu-cluster={cluster.address}"
        poison_job(tmp_path, 10, [], isolate=2, extra="compute: cpu-cluster\n")
        proc = run_cli(
            "run",
            "pipeline.yml",
            "--run-dir",
            "run",
            "--compute",
            compute,
            cwd=tmp_path,
            timeout=90,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--isolate_failures" in proc.stderr, proc.stderr
        assert not (tmp_path / "run" / "step" / "outputs" / "out").exists()
        poison_job(tmp_path, 10, [], isolate=None, extra="compute: cpu-cluster\n")
        proc = run_cli(
            "run",
            "pipeline.yml",
            "--run-dir",
            "run2",
            "--compute",
            compute,
            "--isolate-failures",
            "1",
            cwd=tmp_path,
            timeout=90,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "isolate_failures" in proc.stderr, proc.stderr
        listed = tmp_path / "quarantine.csv"
        listed.write_text(
            ",".join(QUARANTINE_HEADER) + f"\nstep,0,1,{tmp_path / 'data' / name(1)},raised,x,\n"
        )
        proc = run_cli(
            "run",
            "pipeline.yml",
            "--run-dir",
            "run3",
            "--compute",
            compute,
            "--skip-items",
            str(listed),
            cwd=tmp_path,
            timeout=90,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--skip-items" in proc.stderr, proc.stderr
    finally:
        cluster.stop()


# ---- a job stopped by a limit mid-bisection -----------------------------------------------

# POISON_SCRIPT, plus: a sub-batch holding the file named in $SLOW sleeps 30 s first (its
# piece stays open; the whole mini-batch still fails at once on its poison).
SLOW_ONE = POISON_SCRIPT.replace(
    "def run(mini_batch):\n",
    "def run(mini_batch):\n"
    "    if len(mini_batch) < 64 and any(\n"
    "        os.path.basename(p) == os.environ['SLOW'] for p in mini_batch\n"
    "    ):\n"
    "        time.sleep(30)\n",
)


def test_a_limit_stopping_the_job_mid_bisection_writes_no_half_mini_batch(tmp_path: Path) -> None:
    """Mini-batch 1 fails at once (its first file) and bisects: its half [96, 128) is
    accepted, [64, 96) hangs on a slow file. Mini-batch 0's single poison is quarantined
    meanwhile, which exceeds error_threshold 0: the job stops with mini-batch 1 still being
    bisected, and the output has none of its rows (they are not a whole mini-batch's)."""
    poison_job(
        tmp_path,
        128,
        [63, 64],
        isolate=2,
        script=SLOW_ONE,
        more_env={"SLOW": name(80)},
        extra="error_threshold: 0\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    data = job_json(result.run_dir)
    assert "error_threshold" in data["reason"]
    accepted = [r for r in sub_batch_rows(result.run_dir, 2) if r["status"] == "succeeded"]
    assert any(int(r["items_in"]) == 32 for r in accepted)  # [96, 128), before the stop
    assert output_lines(result.run_dir) == [name(i) for i in range(63)]


def test_parajob_show_lists_the_quarantined_items(tmp_path: Path) -> None:
    poison_job(tmp_path, 130, [40, 100], isolate=2)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "quarantined items (2, logs/quarantine.csv):" in shown.stdout, shown.stdout
    for i in (40, 100):
        assert f"mini-batch {i // BATCH} item {i % BATCH}: " in shown.stdout
        assert name(i) in shown.stdout
    page = run_cli("show", str(result.run_dir), "--html", "-o", "report.html", cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'class="quarantined"' in html and name(40) in html
