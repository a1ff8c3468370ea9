"""parajob's side: one pipeline YAML + entry script per workload (the entry-script contract).

    write_job(folder, workload, data) -> folder/pipeline.yml
        folder/src/entry.py       init()/run() calling the work module
        folder/src/work_*.py      a copy of bench/peers/work_*.py (a user's helper module
                                  next to the entry script: the peers import the same file)

Every job: 1 node (instance_count 1) x 2 worker processes, append_row to a uri_file,
mini_batch_size as in issue 13 ("1", "100", "10", "1MB"; partitions: one per
(store, brand)). The output is <run dir>/job/outputs/out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

STEP = "job"
WORKERS = 2

ENTRIES = {
    "files": """\
from work_files import count, image_batch, image_init, stamp_batch, tiny_batch


def init():
    if {images}:
        image_init()


def run(mini_batch):
    return {batch}(mini_batch)
""",
    "table": """\
from work_tables import score


def run(mini_batch):
    return score(mini_batch)
""",
    "partitions": """\
from work_tables import fit


def run(mini_batch, mini_batch_context):
    return fit(mini_batch)
""",
}
SIZES = {
    "tiny-1": "1",
    "tiny-100": "100",
    "images": "10",
    "table-csv": "1MB",
    "table-parquet": "1MB",
    "first-run": "1",  # the first run() after launch: 10 files, stamp_batch
    "plan": "100",  # the plan-memory measure: 1,000,000 empty files, one row per batch
}
BATCH = {"tiny-1": "tiny_batch", "tiny-100": "tiny_batch", "images": "image_batch"}
BATCH |= {"first-run": "stamp_batch", "plan": "count"}


def entry_script(workload: str) -> str:
    if workload in BATCH:
        return ENTRIES["files"].format(images=workload == "images", batch=BATCH[workload])
    return ENTRIES["partitions" if workload == "partitions" else "table"]


def write_job(
    folder: Path,
    workload: str,
    data: Path,
    workers: int = WORKERS,
    *,
    mini_batch_size: str | None = None,
    program_arguments: str = "",
    extra: str = "",
) -> Path:
    """The pipeline of one workload over data (a folder, or an MLTable folder).
    mini_batch_size: instead of the workload's; program_arguments: the task's; extra: YAML
    lines added to the step (indented 4)."""
    src = folder / "src"
    src.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).parent
    for module in ("work_files.py", "work_tables.py"):
        shutil.copyfile(here / module, src / module)
    (src / "entry.py").write_text(entry_script(workload), encoding="utf-8")
    if workload in BATCH:
        data_input = f"{{type: uri_folder, path: {data}}}"
    else:
        data_input = f"{{type: mltable, path: {data}, mode: direct}}"
    if workload == "partitions":
        split = "    partition_keys: [store, brand]\n"
    else:
        split = f'    mini_batch_size: "{mini_batch_size or SIZES[workload]}"\n'
    arguments = f'      program_arguments: "{program_arguments}"\n' if program_arguments else ""
    pipeline = folder / "pipeline.yml"
    pipeline.write_text(
        "type: pipeline\n"
        "jobs:\n"
        f"  {STEP}:\n"
        "    type: parallel\n"
        "    inputs:\n"
        f"      data: {data_input}\n"
        "    outputs:\n"
        "      out: {type: uri_file}\n"
        "    input_data: ${{inputs.data}}\n"
        f"{split}"
        "    resources: {instance_count: 1}\n"
        f"    max_concurrency_per_instance: {workers}\n"
        f"{extra}"
        "    task:\n"
        "      type: run_function\n"
        "      code: ./src\n"
        "      entry_script: entry.py\n"
        f"{arguments}"
        "      append_row_to: ${{outputs.out}}\n",
        encoding="utf-8",
    )
    return pipeline


def output(run_dir: Path) -> Path:
    return run_dir / STEP / "outputs" / "out"
