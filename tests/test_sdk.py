"""The Azure SDK builder: parallel_run_function + RunFunction + Input/Output in a
dsl.pipeline, dumped to YAML and run by `parajob run`, read back by parajob.load.

Pipelines are built in this process (as an SDK user's script does) with the working
directory in tmp_path, then run through the real CLI in a subprocess (conftest.run_cli).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import make_files, run_cli

import parajob
from parajob import Input, Output, dsl
from parajob.errors import ParajobError, SpecError, ValidationError
from parajob.parallel import RunFunction, parallel_run_function

DATA = Path(__file__).parent / "data"
README = Path(__file__).parent.parent / "README.md"


def copy_iris(tmp: Path) -> Path:
    shutil.copytree(DATA / "pipelines" / "iris", tmp / "iris")
    return tmp / "iris"


def output_rows(run: Path, relative: str) -> list[str]:
    """An output's lines with the run folder written as RUN (rows name the run's copy of
    the model folder)."""
    text = (run / relative).read_text(encoding="utf-8")
    return text.replace(str(run), "RUN").splitlines()


def seed_iris_with_the_sdk() -> parajob.Pipeline:
    """tests/data/pipelines/iris/pipeline.yml, written with the SDK builder."""
    score = parallel_run_function(
        name="batch_prediction",
        compute="azureml:cpu-cluster",
        inputs=dict(
            input_data=Input(type="mltable", mode="direct"),
            score_model=Input(type="uri_folder", mode="download"),
        ),
        outputs=dict(job_output_file=Output(type="uri_file", mode="rw_mount")),
        input_data="${{inputs.input_data}}",
        mini_batch_size="10kb",
        instance_count=2,
        max_concurrency_per_instance=2,
        logging_level="DEBUG",
        mini_batch_error_threshold=5,
        retry_settings=dict(max_retries=2, timeout=60),
        task=RunFunction(
            code="./script",
            entry_script="iris_prediction.py",
            environment=dict(
                name="prs-env",
                version=1,
                image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04",
                conda_file="./environment/environment_parallel.yml",
            ),
            program_arguments="--model ${{inputs.score_model}} --error_threshold 5 "
            "--allowed_failed_percent 30 --task_overhead_timeout 1200 "
            "--progress_update_timeout 600 --first_task_creation_timeout 600 "
            "--copy_logs_to_parent True --resource_monitor_interva 20",
            append_row_to="${{outputs.job_output_file}}",
        ),
    )

    @dsl.pipeline(
        display_name="iris-batch-prediction-using-parallel",
        description="The hello world pipeline job with inline parallel job",
        tags={"tag": "tagvalue", "owner": "sdkteam"},
        default_compute="azureml:cpu-cluster",
    )
    def iris() -> None:
        batch_prediction = score(  # noqa: F841 (the variable names the node)
            input_data=Input(type="mltable", path="./neural-iris-mltable", mode="direct"),
            score_model=Input(type="uri_folder", path="./iris-model", mode="download"),
        )

    return iris()


# -- the seed's iris job --------------------------------------------------------------------
def test_seed_iris_built_with_the_sdk_equals_the_yaml_and_gives_the_same_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_iris(tmp_path)
    monkeypatch.chdir(folder)
    job = seed_iris_with_the_sdk()
    assert list(job.jobs) == ["batch_prediction"]  # named after the variable
    assert parajob.load(folder / "pipeline.yml") == job
    # Dumped elsewhere: ./script, ./iris-model ... are rebased so they still resolve.
    (folder / "built").mkdir()
    dumped = job.dump(folder / "built" / "sdk.yml")
    assert "code: ../script" in dumped.read_text()
    assert parajob.load(dumped) == job
    by_hand = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "a"), cwd=folder)
    built = run_cli("run", str(dumped), "--run-dir", str(tmp_path / "b"), cwd=tmp_path)
    assert by_hand.returncode == 0, by_hand.stderr
    assert built.returncode == 0, built.stderr
    out = "batch_prediction/outputs/job_output_file"
    rows = output_rows(tmp_path / "b", out)
    assert len(rows) == 600
    assert rows == output_rows(tmp_path / "a", out)


def test_yaml_text_round_trip_gives_an_equal_entity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_iris(tmp_path)
    monkeypatch.chdir(folder)
    job = seed_iris_with_the_sdk()
    text = job.to_yaml()
    assert parajob.load(text) == job
    monkeypatch.chdir(tmp_path)  # text resolves against the cwd, or base_dir=
    assert parajob.load(text, base_dir=folder) == job
    with pytest.raises(SpecError, match="neural-iris-mltable"):
        parajob.load(text)  # from tmp_path, ./neural-iris-mltable does not exist
    changed = parajob.load(text, base_dir=folder)
    changed.jobs["batch_prediction"].mini_batch_size = "20kb"
    assert changed != job


def test_azure_sdk_example_runs_with_only_its_imports_changed(tmp_path: Path) -> None:
    """azureml-examples' iris notebook code, imports changed, dumped and run; its output
    equals that of the same pipeline written by hand."""
    folder = copy_iris(tmp_path)
    shutil.copy(DATA / "sdk" / "iris_batch_prediction.py", folder / "iris_sdk.py")
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy; runpy.run_path('iris_sdk.py')['my_job'].dump('sdk.yml')",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    assert "parallel_train:" in build.stdout  # print(my_job) shows the YAML
    (folder / "by_hand.yml").write_text(
        textwrap.dedent("""\
        type: pipeline
        display_name: parallel job for iris batch inferencing
        settings:
          default_compute: cpu-cluster
        jobs:
          parallel_train:
            type: parallel
            display_name: Batch Inferencing with mini_batch_size
            description: >-
              parallel job to do batch inferencing with mini_batch_size on mltable tabular
              input
            tags: {azureml_parallel_example: 2a_sdk}
            inputs:
              input_data:
                type: mltable
                path: ./neural-iris-mltable
                mode: direct
                description: Input tabular mltable data.
              score_model:
                type: uri_folder
                path: ./iris-model
                mode: download
                description: Folder contains the model file.
            outputs:
              job_output_file:
                type: uri_file
                mode: rw_mount
                path: azureml://datastores/workspaceblobstore/paths/${name}/my_append_outputaggregated_returns.csv
            input_data: ${{inputs.input_data}}
            mini_batch_size: 10kb
            resources: {instance_count: 2}
            max_concurrency_per_instance: 2
            error_threshold: 5
            mini_batch_error_threshold: 10
            retry_settings: {max_retries: 2, timeout: 60}
            logging_level: DEBUG
            environment_variables: {AZUREML_PARALLEL_EXAMPLE: 2a_sdk}
            task:
              type: run_function
              code: ./script
              entry_script: iris_prediction.py
              environment:
                image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04
                conda_file: ./environment/environment_parallel.yml
              program_arguments: >-
                --model ${{inputs.score_model}} --allowed_failed_percent 30
                --task_overhead_timeout 1200 --progress_update_timeout 600
                --resource_monitor_interval 20
              append_row_to: ${{outputs.job_output_file}}
        """),
        encoding="utf-8",
    )
    # The same pipeline, but for the trailing space the SDK example's arguments end with.
    sdk = parajob.load(folder / "sdk.yml")
    task = sdk.jobs["parallel_train"].task
    assert task is not None and task.program_arguments is not None
    task.program_arguments = task.program_arguments.strip()
    assert sdk == parajob.load(folder / "by_hand.yml")
    runs = {}
    for name in ("sdk", "by_hand"):
        proc = run_cli("run", f"{name}.yml", "--run-dir", str(tmp_path / name), cwd=folder)
        assert proc.returncode == 0, proc.stderr
        runs[name] = output_rows(
            tmp_path / name,
            "datastores/workspaceblobstore/${name}/my_append_outputaggregated_returns.csv",
        )
    assert len(runs["sdk"]) == 600
    assert runs["sdk"] == runs["by_hand"]


def test_azure_mnist_example_with_load_component_runs_with_only_its_imports_changed(
    tmp_path: Path,
) -> None:
    """azureml-examples' mnist notebook: a command component file (load_component) feeding
    a parallel_run_function node."""
    shutil.copytree(DATA / "pipelines" / "mnist", tmp_path / "mnist")
    folder = tmp_path / "mnist"
    shutil.copy(DATA / "sdk" / "mnist_batch_prediction.py", folder / "mnist_sdk.py")
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy; runpy.run_path('mnist_sdk.py')['my_job'].dump('sdk.yml')",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    job = parajob.load(folder / "sdk.yml")
    assert list(job.jobs) == ["prepare_data", "predict_digits_mnist"]
    assert job.jobs["prepare_data"].component == "./script/prepare_data.yml"
    proc = run_cli("run", "sdk.yml", "--run-dir", str(tmp_path / "run"), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    rows = (
        (
            tmp_path
            / "run"
            / "datastores"
            / "workspaceblobstore"
            / "${name}"
            / "aggregated_returns.csv"
        )
        .read_text()
        .splitlines()
    )
    # "<file> <digit> <model> <AZUREML_PARALLEL_EXAMPLE> <worker>", in input order
    assert [r.split()[:4] for r in rows] == [
        [f"digit{i:02d}.png", str(i % 10), "digits-v1", "3a_sdk"] for i in range(12)
    ]


# -- command node feeding a parallel node ---------------------------------------------------
def write_two_step_sources(tmp: Path) -> None:
    (tmp / "prep").mkdir()
    (tmp / "prep" / "prep.py").write_text(
        textwrap.dedent("""\
        import os, sys
        out = sys.argv[sys.argv.index("--out") + 1]
        n = int(sys.argv[sys.argv.index("--n") + 1])
        os.makedirs(out, exist_ok=True)
        for i in range(n):
            with open(os.path.join(out, f"f{i:03d}.txt"), "w") as f:
                f.write(f"item {i}\\n")
        """)
    )
    (tmp / "src").mkdir()
    (tmp / "src" / "entry.py").write_text(
        textwrap.dedent("""\
        import os

        def run(mini_batch):
            return [os.path.basename(p) + " " + open(p).read().strip() for p in mini_batch]
        """)
    )


def two_step_pipeline() -> parajob.Pipeline:
    prepare = parajob.command(
        name="prepare",
        command="python prep.py --out ${{outputs.files}} --n ${{inputs.n}}",
        code="./prep",
        inputs={"n": Input(type="integer", default=3)},
        outputs={"files": Output(type="uri_folder")},
        environment="azureml:sklearn-env:1",
    )
    score = parallel_run_function(
        name="score",
        inputs={"data": Input(type="uri_folder")},
        outputs={"lines": Output(type="uri_file")},
        input_data="${{inputs.data}}",
        mini_batch_size="2",
        max_concurrency_per_instance=2,
        task=RunFunction(code="./src", entry_script="entry.py", append_row_to="${{outputs.lines}}"),
    )

    @dsl.pipeline(description="prepare then score")
    def two_steps(count: int = 5) -> dict[str, Any]:
        made = prepare(n=count)
        scored = score(data=made.outputs.files)
        scored.outputs.lines.path = "./results/lines.txt"
        return {"lines": scored.outputs.lines}

    return two_steps()


def test_dsl_pipeline_with_a_command_node_feeding_a_parallel_node_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_two_step_sources(tmp_path)
    monkeypatch.chdir(tmp_path)
    job = two_step_pipeline()
    assert list(job.jobs) == ["made", "scored"]
    text = job.to_yaml()
    assert "path: ${{parent.jobs.made.outputs.files}}" in text
    assert "n: ${{parent.inputs.count}}" in text
    assert "lines: ${{parent.outputs.lines}}" in text
    (tmp_path / "sub").mkdir()
    dumped = job.dump(tmp_path / "sub" / "p.yml")
    assert parajob.load(dumped) == job
    proc = run_cli("run", str(dumped), "--run-dir", str(tmp_path / "run"), cwd=tmp_path / "sub")
    assert proc.returncode == 0, proc.stderr
    # the pipeline output took the node output's path, relative to where it was built
    lines = (tmp_path / "results" / "lines.txt").read_text().splitlines()
    assert lines == [f"f{i:03d}.txt item {i}" for i in range(5)]


# -- parajob.load -----------------------------------------------------------------------------
def test_a_loaded_pipeline_with_component_files_dumps_elsewhere_and_runs(tmp_path: Path) -> None:
    shutil.copytree(DATA / "pipelines" / "mnist", tmp_path / "mnist")
    job = parajob.load(tmp_path / "mnist" / "pipeline.yml")
    assert set(job.jobs) == {"predict_digits_mnist", "prepare_data"}
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    dumped = job.dump(tmp_path / "elsewhere" / "deep" / "p.yml")
    text = dumped.read_text()
    assert text.startswith("$schema: ")
    assert "component: ../../mnist/script/predict_digits_mnist.yml" in text
    assert parajob.load(dumped) == job
    proc = run_cli("run", str(dumped), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("SUCCEEDED") == 2


def test_a_single_parallel_job_loads_as_a_one_step_pipeline_with_its_set_edits(
    tmp_path: Path,
) -> None:
    make_files(tmp_path / "data", 6)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    (tmp_path / "other").mkdir()
    make_files(tmp_path / "other", 4)
    (tmp_path / "score.yml").write_text(
        textwrap.dedent("""\
        $schema: https://azuremlschemas.azureedge.net/latest/parallelJob.schema.json
        type: parallel
        inputs:
          data: {type: uri_folder, path: ./data}
        outputs:
          out: {type: uri_file}
        input_data: ${{inputs.data}}
        mini_batch_size: "3"
        task: {type: run_function, code: ./src, entry_script: entry.py,
               append_row_to: "${{outputs.out}}"}
        """)
    )
    job = parajob.load(
        tmp_path / "score.yml",
        set=["mini_batch_size=1", "inputs.data.path=./other"],
        datastores={"blob": "./blob"},
    )
    assert list(job.jobs) == ["score"]  # named after the file, as the CLI names it
    assert job.overrides == (
        "jobs.score.mini_batch_size=1",
        f"jobs.score.inputs.data.path={tmp_path / 'other'}",
    )
    assert job.datastores == {"blob": Path.cwd() / "blob"}
    assert job.jobs["score"].mini_batch_size == "3"  # the edits are not applied to the entity
    text = (tmp_path / "score.yml").read_text()
    assert list(parajob.load(text, base_dir=tmp_path).jobs) == ["job"]  # text: no file name
    assert list(parajob.load(text + "name: scorer\n", base_dir=tmp_path).jobs) == ["scorer"]
    # What parajob.run(entity) does: dump into the run folder, run with the edits.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dumped = job.dump(run_dir / "pipeline.yml")
    args = [a for edit in job.overrides for a in ("--set", edit)]
    proc = run_cli("run", str(dumped), *args, "--run-dir", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 total, 4 completed" in proc.stdout  # ./other, one file per mini-batch


def test_load_of_a_bad_yaml_raises_spec_error_with_its_diagnostics_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    text = textwrap.dedent("""\
        type: pipeline
        jobs:
          score:
            type: parallel
            inputs:
              data: {type: uri_folder, path: ./data}
            input_data: ${{inputs.data}}
            mini_batch_size: "10 kb"
            task: {type: run_function, code: ./src, entry_script: entry.py}
        """)
    with pytest.raises(SpecError) as caught:
        parajob.load(text, base_dir=tmp_path)
    fields = {d.field for d in caught.value.errors}
    assert {"jobs.score.inputs.data.path", "jobs.score.mini_batch_size"} <= fields
    assert all(d.line is not None for d in caught.value.errors)
    with pytest.raises(SpecError, match="no such file"):
        parajob.load(tmp_path / "missing.yml")
    assert capsys.readouterr() == ("", "")


# -- validation, with the SDK's messages ------------------------------------------------------
def _comp() -> Any:
    return parallel_run_function(
        name="score",
        inputs={"data": Input(type="uri_folder")},
        outputs={"lines": Output(type="uri_file")},
        input_data="${{inputs.data}}",
        task=RunFunction(code="./src", entry_script="entry.py"),
    )


def _bad_return() -> None:
    @dsl.pipeline
    def p() -> Any:
        return _comp()()

    p()


def _bad_name() -> None:
    @dsl.pipeline
    def p() -> None:
        node = _comp()()
        node.name = "Bad-Name"

    p()


def _var_args() -> None:
    @dsl.pipeline
    def p(*inputs: Any) -> None:
        pass


def _missing_input() -> None:
    @dsl.pipeline
    def p(data: Any, n: int = 3) -> None:
        pass

    p(n=4)


SDK_MESSAGES = [
    (
        lambda: Input(type="integer", path="./x"),
        "path",
        "Invalid parameter for 'integer' Input, parameter 'path' should be None but got './x'",
    ),
    (
        lambda: Input(type="uri_folder", default="a"),
        "default",
        "Default value of Input cannot be set: Non-primitive type Input has no default value.",
    ),
    (
        lambda: Input(type="integer", default="abc"),
        "default",
        "Default value of Input cannot be parsed, got 'abc', type = <class 'str'>.",
    ),
    (
        lambda: Input(type="integer", default=[1]),
        "default",
        "Default value of Input cannot be set: type must be one of ['boolean', 'integer', "
        "'number', 'string'], got '<class 'list'>'.",
    ),
    (
        lambda: parallel_run_function(
            task=RunFunction(code="./s", entry_script="e.py"), mini_batch_size="10 kb"
        ),
        "mini_batch_size",
        r"Parameter mini_batch_size must follow regex rule ^\d+([kKmMgG][bB])*$",
    ),
    (
        lambda: parallel_run_function(
            task=RunFunction(code="./s", entry_script="e.py"), retry_settings=5
        ),
        "retry_settings",
        "Expecting (<class 'dict'>, <class 'parajob.entities.settings.RetrySettings'>) for "
        "retry_settings, got <class 'int'> instead.",
    ),
    (
        lambda: parallel_run_function(
            task=RunFunction(code="./s", entry_script="e.py"), logging_level=10
        ),
        "logging_level",
        "Expecting <class 'str'> for logging_level, got <class 'int'> instead.",
    ),
    (
        lambda: _comp()(dataa=Input(path="./d")),
        "dataa",
        "score() got an unexpected keyword argument 'dataa', valid keywords: 'data'.",
    ),
    (
        lambda: _comp().outputs.line,
        "line",
        "Got an unexpected attribute 'line', valid attributes: 'lines'.",
    ),
    (
        _bad_return,
        None,
        "The return type of dsl.pipeline decorated function should be a "
        "mapping from output name to a node's output (node.outputs.<name>) with owner.",
    ),
    (
        _bad_name,
        "name",
        "Invalid node name found: 'Bad-Name'. Node name must start with a "
        "lower letter or underscore, and can only contain lower letters, numbers and "
        "underscore.",
    ),
    (_missing_input, "data", "p() missing 1 required positional argument(s): 'data'."),
    (_var_args, "inputs", "'p': dsl pipeline does not accept *args or **kwargs as parameters."),
]


@pytest.mark.parametrize(
    ("build", "parameter", "message"), SDK_MESSAGES, ids=[m[2][:40] for m in SDK_MESSAGES]
)
def test_bad_parameters_raise_the_sdk_message(
    build: Any, parameter: str | None, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        build()
    assert str(caught.value) == message
    assert caught.value.parameter == parameter
    assert isinstance(caught.value, ParajobError) and isinstance(caught.value, ValueError)


def test_a_pipeline_made_directly_names_its_steps_by_their_keys(tmp_path: Path) -> None:
    comp = _comp()
    prep = comp(data=Input(path=str(tmp_path)))
    job = parajob.Pipeline(jobs={"prep": prep, "score": comp(data=prep.outputs.lines)})
    assert "path: ${{parent.jobs.prep.outputs.lines}}" in job.to_yaml()
    with pytest.raises(ValidationError, match="invalid step name 'a b'"):
        parajob.Pipeline(jobs={"a b": prep})


def test_cluster_settings_are_written_and_recorded_without_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(tmp_path / "data", 3)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    monkeypatch.chdir(tmp_path)
    comp = parallel_run_function(
        name="score",
        inputs={"data": Input(type="uri_folder", path="./data")},
        input_data="${{inputs.data}}",
        compute="gpu-cluster",
        instance_type="Standard_NC6",
        docker_args="--ipc=host",
        shm_size="2g",
        identity={"type": "managed"},
        is_deterministic=False,
        task=RunFunction(code="./src", entry_script="entry.py"),
    )

    @dsl.pipeline
    def p() -> None:
        score = comp()
        score.resources.instance_count = 2  # resources exists on every node

    job = p()
    step = job.to_dict()["jobs"]["score"]
    assert step["resources"] == {
        "instance_count": 2,
        "instance_type": "Standard_NC6",
        "docker_args": "--ipc=host",
        "shm_size": "2g",
    }
    assert step["identity"] == {"type": "managed"} and step["is_deterministic"] is False
    assert step["compute"] == "gpu-cluster"
    job.dump("p.yml")
    assert parajob.load("p.yml") == job
    proc = run_cli("run", "p.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_run_function_model_is_refused_on_validation_as_task_model_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    monkeypatch.chdir(tmp_path)
    comp = parallel_run_function(
        inputs={"data": Input(type="uri_folder", path="./src")},
        input_data="${{inputs.data}}",
        task=RunFunction(code="./src", entry_script="entry.py", model="azureml:m:1"),
    )
    job = parajob.Pipeline(jobs={"score": comp()})
    with pytest.raises(SpecError, match="task.model .* is not supported"):
        parajob.load(job.to_yaml())


def test_import_parajob_does_not_import_the_builder() -> None:
    code = (
        "import sys, parajob; assert 'parajob.entities' not in sys.modules; "
        "from parajob import Input, Pipeline, dsl, load, command; "
        "assert 'parajob.entities' in sys.modules and dsl.pipeline"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- README ---------------------------------------------------------------------------------
def test_readme_sdk_example_runs(tmp_path: Path) -> None:
    section = README.read_text().split("### Azure SDK builder", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    make_files(tmp_path / "images", 7)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(
        "import os\n\ndef run(mini_batch):\n"
        "    return [f'{os.path.basename(p)},{len(p)}' for p in mini_batch]\n"
    )
    (tmp_path / "example.py").write_text(code.group(1))
    build = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert build.returncode == 0, build.stderr
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = (tmp_path / "run" / "score" / "outputs" / "scores").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == [f"f{i:05d}.txt" for i in range(7)]
