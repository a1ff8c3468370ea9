"""Whole pipelines through the CLI: the public examples' shapes, step order, command steps,
components, output path templates, and what entry scripts see in their workers.

Each test copies its pipeline into tmp_path (or writes one there) and runs
``python -m parajob`` in a subprocess, as a user would.
"""

from __future__ import annotations

import csv
import shutil
import textwrap
from pathlib import Path

from conftest import make_files, run_cli

PIPELINES = Path(__file__).parent / "data" / "pipelines"


def copy_example(name: str, tmp: Path) -> Path:
    shutil.copytree(PIPELINES / name, tmp / name)
    return tmp / name


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def worker_logs(step_dir: Path, kind: str = "stderr") -> list[str]:
    logs = step_dir / "logs" / "user" / kind
    return sorted(str(p.relative_to(logs)) for p in logs.rglob("*.txt"))


def parallel_pipeline(
    entry: str, extra: str = "", *, append_row: bool = True, steps: dict[str, str] | None = None
) -> str:
    """A pipeline of parallel steps over ./data running src/<entry>: one step `step` with
    the YAML lines `extra`, or `steps` (name -> its extra lines). With append_row each step
    writes its items to its uri_file output `out`."""
    outputs = "    outputs:\n      out: {type: uri_file}\n" if append_row else ""
    append = ',\n           append_row_to: "${{outputs.out}}"' if append_row else ""
    text = "type: pipeline\njobs:\n"
    for step, step_extra in (steps or {"step": extra}).items():
        text += (
            f"  {step}:\n"
            "    type: parallel\n"
            "    inputs:\n"
            "      data: {type: uri_folder, path: ./data}\n"
            f"{outputs}"
            "    input_data: ${{inputs.data}}\n"
            f"{textwrap.indent(textwrap.dedent(step_extra), '    ')}"
            f"    task: {{type: run_function, code: ./src, entry_script: {entry}{append}}}\n"
        )
    return text


# -- the public examples --------------------------------------------------------------------
def test_seed_iris_pipeline_runs_unchanged(tmp_path: Path) -> None:
    folder = copy_example("iris", tmp_path)
    run = folder / "run"
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(run), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    # The flag typo of the official example is a warning that names the flag meant.
    assert "'--resource_monitor_interva' is not a runtime flag" in proc.stderr
    assert "did you mean '--resource_monitor_interval'?" in proc.stderr
    # append_row_to a uri_file output with no path: the file itself, under the run folder.
    # The table is cut by "10kb" into DataFrames; rows come back in input order.
    rows = (run / "batch_prediction" / "outputs" / "job_output_file").read_text().splitlines()
    assert len(rows) == 600
    species = [r.split()[4] for r in rows]
    assert species[:3] == ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]
    assert all(r.endswith(str(run / "batch_prediction" / "inputs" / "score_model")) for r in rows)
    assert sum(" setosa " in r for r in rows) == 200
    batches = list(
        csv.DictReader(
            open(
                run
                / "batch_prediction"
                / "logs"
                / "sys"
                / "job_report"
                / "processed_mini-batches.csv"
            )
        )
    )
    assert len(batches) == 2  # 18 kB in mini-batches of about 10 kB
    # score_model is mode: download: the script read a copy, not the source folder.
    assert (run / "batch_prediction" / "inputs" / "score_model" / "model.txt").is_file()
    # instance_count 2 x max_concurrency_per_instance 2, but never more workers than
    # mini-batches (issue 8): one worker on each node, each with its own logs.
    assert worker_logs(run / "batch_prediction") == [
        f"node00{n}/process001.stderr.txt" for n in (0, 1)
    ]
    recorded = (run / "batch_prediction" / "logs" / "environment.txt").read_text()
    assert "azureml:cpu-cluster -> this machine" in recorded and "prs-env" in recorded
    assert "SUCCEEDED" in proc.stdout


def test_command_step_feeds_a_parallel_component_through_a_datastore(tmp_path: Path) -> None:
    folder = copy_example("mnist", tmp_path)
    run, blob = folder / "run", tmp_path / "blob"
    proc = run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        str(run),
        "--datastore",
        f"workspaceblobstore={blob}",
        cwd=folder,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # prepare_data is listed second but runs first: the parallel step reads its output.
    assert proc.stdout.index("step:                 prepare_data") < proc.stdout.index(
        "step:                 predict_digits_mnist"
    )
    assert "[prepare_data] prepared 12 images" in proc.stderr
    images = run / "prepare_data" / "outputs" / "mnist_png"
    assert len(list(images.iterdir())) == 12
    # ${{default_datastore}} and ${{name}} in the output path; the datastore is mapped.
    output = blob / "run-predict_digits_mnist" / "aggregated_returns.csv"
    lines = output.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"digit{i:02d}.png" for i in range(12)]
    # The node's environment_variables reached the workers; the model came from the node's
    # input; the component's settings apply (2 instances x 2 workers).
    assert all(line.split()[2:4] == ["digits-v1", "3a_yaml"] for line in lines)
    assert len(worker_logs(run / "predict_digits_mnist")) == 4


def test_output_path_templates_and_a_local_component(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 5)
    write(
        tmp_path,
        {
            "src/echo.py": """\
            import os
            def run(mini_batch):
                return [os.path.basename(p) for p in mini_batch]
            """,
            "echo.yml": """\
            type: parallel
            inputs:
              files: {type: uri_folder}
            outputs:
              listing: {type: uri_file}
            input_data: ${{inputs.files}}
            mini_batch_size: "2"
            task:
              type: run_function
              code: ./src
              entry_script: echo.py
              append_row_to: ${{outputs.listing}}
            """,
            "pipeline.yml": """\
            type: pipeline
            jobs:
              echo:
                component: ./echo.yml
                inputs:
                  files: {path: ./data}
                outputs:
                  listing:
                    path: ./results/${{name}}/${{output_name}}.txt
            """,
        },
    )
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run-7"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "results" / "run-7-echo" / "listing.txt"
    assert target.read_text().splitlines() == [f"f{i:05d}.txt" for i in range(5)]


# -- what the entry script sees -------------------------------------------------------------
def test_entry_script_logger_and_minibatch_index_land_in_the_worker_logs(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 6)
    write(
        tmp_path,
        {
            "src/score.py": """\
            import logging
            import os
            from azureml_user.parallel_run import EntryScript

            def init():
                EntryScript().logger.info("init in %s", EntryScript().agent_name)

            def run(mini_batch, mini_batch_context):
                entry = EntryScript()
                assert entry is EntryScript()  # one per process
                index = mini_batch_context.minibatch_index
                entry.logger.info("mini-batch %d: %d files", index, len(mini_batch))
                logging.getLogger("user").info("root logger saw mini-batch %d", index)
                assert mini_batch_context.partition_key_value is None
                return [f"{index} {entry.agent_name} {entry.log_dir} {entry.output_dir} "
                        f"{os.environ['AZUREML_BI_OUTPUT_PATH']}" for _ in mini_batch]
            """,
            "pipeline.yml": """\
            type: pipeline
            jobs:
              step:
                type: parallel
                inputs:
                  data: {type: uri_folder, path: ./data}
                outputs:
                  out: {type: uri_folder}
                input_data: ${{inputs.data}}
                mini_batch_size: "2"
                max_concurrency_per_instance: 1
                logging_level: INFO
                task:
                  type: run_function
                  code: ./src
                  entry_script: score.py
                  append_row_to: ${{outputs.out}}
            """,
        },
    )
    run = tmp_path / "run"
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    logs = run / "step" / "logs" / "user"
    script_log = (logs / "entry_script_log" / "node000" / "process001.log.txt").read_text()
    assert "init in process001" in script_log
    for index in range(3):
        assert "|INFO|" in script_log and f"mini-batch {index}: 2 files" in script_log
    # The root logger writes to the worker's stdout log, as on Azure.
    stdout_log = (logs / "stdout" / "node000" / "process001.stdout.txt").read_text()
    assert "root logger saw mini-batch 2" in stdout_log
    # A folder output: append_row writes <folder>/parallel_run_step.txt; output_dir and
    # AZUREML_BI_OUTPUT_PATH name that folder.
    out = run / "step" / "outputs" / "out"
    rows = [r.split() for r in (out / "parallel_run_step.txt").read_text().splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "1", "1", "2", "2"]
    assert {tuple(r[1:]) for r in rows} == {
        ("process001", str(logs / "entry_script_log" / "node000"), str(out), str(out))
    }


def test_program_arguments_win_over_the_yaml_fields(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 8)
    write(
        tmp_path,
        {
            "src/short.py": """\
            import os, time
            from pathlib import Path

            def init():
                # Every worker reaches init() before any returns short: the first short
                # return stops the job, and a worker still starting then would never log.
                started = Path(os.environ["STARTED"])
                (started / str(os.getpid())).touch()
                deadline = time.monotonic() + 60
                while len(list(started.iterdir())) < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)

            def run(mini_batch):
                return mini_batch[1:]  # one item short in every mini-batch
            """,
            "pipeline.yml": """\
            type: pipeline
            jobs:
              step:
                type: parallel
                inputs:
                  data: {type: uri_folder, path: ./data}
                input_data: ${{inputs.data}}
                mini_batch_size: "2"
                max_concurrency_per_instance: 1
                error_threshold: 100
                environment_variables: {STARTED: ./started}
                task:
                  type: run_function
                  code: ./src
                  entry_script: short.py
                  program_arguments: --process_count_per_node 3 --error_threshold 0
            """,
        },
    )
    (tmp_path / "started").mkdir()
    yml = tmp_path / "pipeline.yml"
    yml.write_text(yml.read_text().replace("./started", str(tmp_path / "started")))
    run = tmp_path / "run"
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(run), cwd=tmp_path)
    # --error_threshold 0 (not 100): the first short return fails the job.
    assert proc.returncode == 1, proc.stderr
    assert "exceed error_threshold 0" in proc.stdout
    # --process_count_per_node 3 (not 1) workers.
    assert len(worker_logs(run / "step")) == 3
    assert (
        "error_threshold: 100 disagrees with the program argument --error_threshold 0"
        in proc.stderr
    )
    assert "max_concurrency_per_instance: 1 disagrees" in proc.stderr


def test_each_gpu_worker_gets_its_own_device(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 6)
    write(
        tmp_path,
        {
            "src/gpu.py": """\
            import os
            from azureml_user.parallel_run import EntryScript
            def run(mini_batch):
                return [f"{EntryScript().agent_name} {os.environ['CUDA_VISIBLE_DEVICES']} "
                        f"{os.environ['AZ_BATCHAI_GPU_COUNT_FOUND']}" for _ in mini_batch]
            """,
            "pipeline.yml": parallel_pipeline(
                "gpu.py",
                steps={
                    "default": 'mini_batch_size: "1"\n',
                    "three": 'mini_batch_size: "1"\nmax_concurrency_per_instance: 3\n',
                },
            ),
        },
    )
    run = tmp_path / "run"
    # Two GPUs, as the driver sees them (CUDA_VISIBLE_DEVICES restricts or simulates).
    proc = run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        str(run),
        cwd=tmp_path,
        env={"CUDA_VISIBLE_DEVICES": "3,5"},
    )
    assert proc.returncode == 0, proc.stderr
    # No max_concurrency_per_instance on a GPU machine: one worker per node.
    assert set((run / "default" / "outputs" / "out").read_text().splitlines()) == {"process001 3 2"}
    # Three workers, two GPUs: the third gets no variable of its own (it inherits all).
    assert set((run / "three" / "outputs" / "out").read_text().splitlines()) <= {
        "process001 3 2",
        "process002 5 2",
        "process003 3,5 2",
    }
    assert len(worker_logs(run / "three")) == 3


def test_settings_json_changes_the_dataframe_output(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 3)
    write(
        tmp_path,
        {
            "src/frame.py": """\
            import os
            import pandas as pd
            def run(mini_batch):
                return pd.DataFrame({"file": [os.path.basename(p) for p in mini_batch],
                                     "size": [os.path.getsize(p) for p in mini_batch]})
            """,
            "src/parallel_run_step.settings.json": """\
            {"append_row": {"pandas.DataFrame.to_csv": {"sep": ","}}}
            """,
            "pipeline.yml": parallel_pipeline("frame.py"),
        },
    )
    run = tmp_path / "run"
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run / "step" / "outputs" / "out").read_text().splitlines() == [
        "f00000.txt,7",
        "f00001.txt,7",
        "f00002.txt,7",
    ]


# -- command steps and the graph ------------------------------------------------------------
def _two_steps(tmp: Path, command: str, settings: str = "") -> None:
    make_files(tmp / "data", 4)
    write(
        tmp,
        {
            "src/echo.py": """\
            import os
            def run(mini_batch):
                return [os.path.basename(p) for p in mini_batch]
            """,
            "pipeline.yml": f"""\
            type: pipeline
            {settings}
            jobs:
              prep:
                type: command
                inputs:
                  raw: {{type: uri_folder, path: ./data}}
                outputs:
                  copied: {{type: uri_folder}}
                command: {command}
              independent:
                type: parallel
                inputs:
                  data: {{type: uri_folder, path: ./data}}
                input_data: ${{{{inputs.data}}}}
                task: {{type: run_function, code: ./src, entry_script: echo.py}}
              score:
                type: parallel
                inputs:
                  data: ${{{{parent.jobs.prep.outputs.copied}}}}
                outputs:
                  out: {{type: uri_file}}
                input_data: ${{{{inputs.data}}}}
                task: {{type: run_function, code: ./src, entry_script: echo.py,
                       append_row_to: "${{{{outputs.out}}}}"}}
            """,
        },
    )


def test_failed_command_step_stops_the_pipeline_with_its_output(tmp_path: Path) -> None:
    _two_steps(tmp_path, "echo 'no space left' >&2; exit 3")
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "the command exited with code 3" in proc.stdout
    assert "no space left" in proc.stdout  # the last lines of its log, in the summary
    assert "step:                 score" not in proc.stdout
    assert not (tmp_path / "run" / "score").exists()


def test_continue_on_step_failure_runs_the_independent_steps(tmp_path: Path) -> None:
    _two_steps(tmp_path, "exit 3", settings="settings: {continue_on_step_failure: true}")
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "step:                 independent" in proc.stdout
    assert (
        "NOT RUN" in proc.stdout and "reads the output of step 'prep', which failed" in proc.stdout
    )


def test_command_output_folder_is_the_next_steps_input(tmp_path: Path) -> None:
    _two_steps(tmp_path, "cp ${{inputs.raw}}/* ${{outputs.copied}}/ && ls ${{outputs.copied}}")
    run = tmp_path / "run"
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run / "score" / "outputs" / "out").read_text().splitlines() == [
        f"f{i:05d}.txt" for i in range(4)
    ]
    assert "[prep] f00003.txt" in proc.stderr
    assert (run / "prep" / "logs" / "user" / "std_log.txt").read_text().count("f0000") == 4


def test_command_step_timeout_kills_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pipeline.yml": """\
        type: pipeline
        jobs:
          slow:
            type: command
            command: echo started; sleep 60
            limits: {timeout: 1}
        """
        },
    )
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "killed after limits.timeout (1 s)" in proc.stdout


def test_set_overrides_change_the_run(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 9)
    write(
        tmp_path,
        {
            "src/echo.py": "def run(mini_batch):\n    return mini_batch\n",
            "pipeline.yml": parallel_pipeline(
                "echo.py", extra='mini_batch_size: "1"\n', append_row=False
            ),
        },
    )
    run = tmp_path / "run"
    proc = run_cli(
        "job",
        "create",
        "--file",
        "pipeline.yml",
        "--run-dir",
        str(run),
        "--set",
        "jobs.step.mini_batch_size=4",
        "--set",
        "jobs.step.max_concurrency_per_instance=1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(
        csv.DictReader(
            open(run / "step" / "logs" / "sys" / "job_report" / "processed_mini-batches.csv")
        )
    )
    assert len(rows) == 3  # 9 files in mini-batches of 4
    assert len(worker_logs(run / "step")) == 1


def test_user_code_is_imported_only_in_subprocesses_never_in_the_driver(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 4)
    write(
        tmp_path,
        {
            "src/where.py": """\
            import os
            with open(os.path.join(os.path.dirname(__file__), "imports.txt"), "a") as f:
                f.write(f"{os.getpid()} {os.getppid()}\\n")
            def run(mini_batch):
                return mini_batch
            """,
            # Two mini-batches, so that two workers start (never more than mini-batches).
            "pipeline.yml": parallel_pipeline(
                "where.py",
                extra="max_concurrency_per_instance: 2\nmini_batch_size: '2'\n",
                append_row=False,
            ),
        },
    )
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pairs = [line.split() for line in (tmp_path / "src" / "imports.txt").read_text().splitlines()]
    # Two workers; no import check before them: they are the check (issue 13).
    assert len(pairs) == 2
    pids, parents = {p for p, _ in pairs}, {pp for _, pp in pairs}
    assert len(parents) == 1  # the driver started them all ...
    assert not parents & pids  # ... and never imported the script itself


def test_validate_runs_no_user_code_beyond_import(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 2)
    write(
        tmp_path,
        {
            "src/side.py": """\
            import pathlib
            def init():
                pathlib.Path(__file__).with_name("init-ran").touch()
            def run(mini_batch):
                pathlib.Path(__file__).with_name("run-ran").touch()
                return mini_batch
            """,
            "pipeline.yml": parallel_pipeline("side.py", append_row=False),
        },
    )
    proc = run_cli("validate", "pipeline.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pipeline.yml: valid (1 step(s): step (parallel))" in proc.stdout
    assert not (tmp_path / "src" / "init-ran").exists()
    assert not (tmp_path / "src" / "run-ran").exists()
    assert not (tmp_path / "runs").exists()


def test_run_defined_inside_a_try_block_is_accepted(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 2)
    write(
        tmp_path,
        {
            "src/guarded.py": """\
            try:
                import does_not_exist_here  # noqa: F401
                def run(mini_batch):
                    return ["fast"] * len(mini_batch)
            except ImportError:
                def run(mini_batch):
                    return ["slow"] * len(mini_batch)
            """,
            "pipeline.yml": parallel_pipeline("guarded.py"),
        },
    )
    run = tmp_path / "run"
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run / "step" / "outputs" / "out").read_text() == "slow\nslow\n"


def test_oj_sales_shape_command_writes_a_table_that_a_partitioned_step_reads(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "oj_sales_data.csv": "Store,Brand,Quantity\n"
            + "".join(
                f"{1000 + i % 3},{['dominicks', 'tropicana'][i % 2]},{i}\n" for i in range(12)
            ),
            "src/partition_data/partition_data.py": """\
            import argparse, os, shutil
            parser = argparse.ArgumentParser()
            parser.add_argument("--data_source")
            parser.add_argument("--partition_keys")
            parser.add_argument("--tabular_output_data")
            args = parser.parse_args()
            shutil.copy(args.data_source, os.path.join(args.tabular_output_data, "data.csv"))
            with open(os.path.join(args.tabular_output_data, "MLTable"), "w") as f:
                f.write("paths:\\n  - file: ./data.csv\\ntransformations:\\n"
                        "  - read_delimited: {delimiter: ',', header: all_files_same_headers}\\n")
            """,
            "src/partition_data/partition_data.yml": """\
            $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
            type: command
            name: partition_data
            version: 1
            inputs:
              data_source: {type: uri_file}
              partition_keys: {type: string}
            outputs:
              tabular_output_data: {type: mltable}
            code: ./
            environment: {image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04}
            command: >-
              python partition_data.py
              --data_source ${{inputs.data_source}}
              --partition_keys ${{inputs.partition_keys}}
              --tabular_output_data ${{outputs.tabular_output_data}}
            """,
            "src/parallel_train/parallel_train.py": """\
            import argparse, os
            def run(input_data, mini_batch_context):
                parser = argparse.ArgumentParser(allow_abbrev=False)
                parser.add_argument("--model_folder")
                args, _ = parser.parse_known_args()
                key = mini_batch_context.partition_key_value
                name = f"{key['Store']}_{key['Brand']}.txt"
                with open(os.path.join(args.model_folder, name), "w") as f:
                    f.write(str(int(input_data["Quantity"].sum())))
                return []
            """,
            "pipeline.yml": """\
            type: pipeline
            display_name: partition by key parallel job
            settings:
              default_compute: azureml:cpu-cluster
            jobs:
              partition_job:
                type: command
                component: ./src/partition_data/partition_data.yml
                inputs:
                  data_source:
                    type: uri_file
                    path: ./oj_sales_data.csv
                  partition_keys: Store,Brand
                outputs:
                  tabular_output_data:
                    type: mltable
                    mode: rw_mount
              parallel_train:
                type: parallel
                inputs:
                  data_source:
                    path: ${{parent.jobs.partition_job.outputs.tabular_output_data}}
                    type: mltable
                    mode: direct
                outputs:
                  model_folder:
                    type: uri_folder
                    mode: rw_mount
                partition_keys:
                  - Store
                  - Brand
                error_threshold: -1
                mini_batch_error_threshold: 5
                input_data: ${{inputs.data_source}}
                max_concurrency_per_instance: 2
                task:
                  type: run_function
                  code: ./src/parallel_train
                  entry_script: parallel_train.py
                  program_arguments: >-
                    --model_folder ${{outputs.model_folder}}
            """,
        },
    )
    run = tmp_path / "run"
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    models = run / "parallel_train" / "outputs" / "model_folder"
    # 3 stores x 2 brands, each partition one run() call: every row sums into one file.
    assert len(list(models.iterdir())) == 6
    assert sum(int(p.read_text()) for p in models.iterdir()) == sum(range(12))
