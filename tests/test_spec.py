"""parajob.spec: loading pipeline YAML, and how bad input is reported.

Each invalid-input test names one mistake and asserts the message's key fragments and the
line it points at (found with ``line_of`` in the YAML text, so fixtures stay editable).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

import parajob.spec
from parajob.errors import Diagnostic, SpecError
from parajob.spec import (
    MiniBatchSize,
    ParallelStep,
    Pipeline,
    RuntimeArgs,
    load_pipeline,
    parse_mini_batch_size,
    parse_program_arguments,
)

DATA = Path(__file__).parent / "data" / "spec"
IRIS = (DATA / "iris_pipeline.yml").read_text()


# -- helpers ------------------------------------------------------------------------------
def make_tree(root: Path) -> None:
    """The folders and files the seed's iris pipeline names."""
    (root / "neural-iris-mltable").mkdir()
    (root / "neural-iris-mltable" / "MLTable").write_text("paths:\n  - file: ./iris.csv\n")
    (root / "neural-iris-mltable" / "iris.csv").write_text("5.1,3.5,1.4,0.2,Iris-setosa\n")
    (root / "iris-model").mkdir()
    (root / "script").mkdir()
    (root / "script" / "iris_prediction.py").write_text("def run(mini_batch):\n    return []\n")


def write(root: Path, text: str, name: str = "pipeline.yml") -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """1-based line of the ``nth`` occurrence of ``needle`` in ``text``."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1


def load_errors(path: Path) -> list[Diagnostic]:
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    return info.value.errors


def one_error(path: Path) -> Diagnostic:
    errors = load_errors(path)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def iris(tmp_path: Path, old: str = "", new: str = "") -> tuple[Path, str]:
    """The iris pipeline in ``tmp_path`` with ``old`` replaced by ``new`` (must occur)."""
    make_tree(tmp_path)
    assert old in IRIS
    text = IRIS.replace(old, new, 1) if old else IRIS
    return write(tmp_path, text), text


STEP = """\
type: pipeline
jobs:
  score:
    type: parallel
    inputs:
      files: {type: uri_folder, path: ./data}
@EXTRA@    outputs:
      results: {type: uri_file}
    input_data: ${{inputs.files}}
    task:
      type: run_function
      code: ./src
      entry_script: score.py
      program_arguments: @ARGS@
      append_row_to: ${{outputs.results}}
"""


def small(tmp_path: Path, args: str = "''", extra_inputs: str = "") -> tuple[Path, str]:
    """A minimal valid pipeline over a folder of files."""
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "score.py").write_text("def run(b):\n    return b\n")
    text = STEP.replace("@ARGS@", args).replace("@EXTRA@", extra_inputs)
    return write(tmp_path, text), text


# -- the seed's iris pipeline ---------------------------------------------------------------
def test_iris_pipeline_loads_with_every_field(tmp_path: Path) -> None:
    path, _ = iris(tmp_path)
    p = load_pipeline(path)
    assert isinstance(p, Pipeline)
    assert p.display_name == "iris-batch-prediction-using-parallel"
    assert p.description == "The hello world pipeline job with inline parallel job"
    assert p.tags == {"tag": "tagvalue", "owner": "sdkteam"}
    assert p.default_compute == "azureml:cpu-cluster"
    assert list(p.jobs) == ["batch_prediction"]
    step = p.jobs["batch_prediction"]
    assert isinstance(step, ParallelStep)
    assert step.compute == "azureml:cpu-cluster"
    assert step.line == line_of(IRIS, "batch_prediction:")
    assert step.inputs["input_data"].type == "mltable"
    assert step.inputs["input_data"].mode == "direct"
    assert step.inputs["input_data"].path == tmp_path / "neural-iris-mltable"
    assert step.inputs["score_model"].mode == "download"
    assert step.outputs["job_output_file"].type == "uri_file"
    assert step.outputs["job_output_file"].path is None
    assert step.input_data == "input_data"
    assert step.mini_batch_size == MiniBatchSize("10kb", None, 10240)
    assert step.instance_count == 2
    assert step.max_concurrency_per_instance == 2
    assert step.logging_level == "DEBUG"
    assert step.mini_batch_error_threshold == 5
    assert step.error_threshold == 5  # not in the YAML: --error_threshold 5 sets it
    assert (step.retry_settings.max_retries, step.retry_settings.timeout) == (2, 60)
    task = step.task
    assert task.type == "run_function"
    assert task.code == tmp_path / "script"
    assert task.entry_script == "iris_prediction.py"
    assert task.append_row_to == "job_output_file"
    assert isinstance(task.environment, dict) and task.environment["name"] == "prs-env"
    assert task.argv[:2] == ("--model", str(tmp_path / "iris-model"))
    assert task.program_arguments.startswith(f"--model {tmp_path / 'iris-model'} --error")
    # Runtime flags stay in argv for the entry script; the typo'd flag passes through.
    assert "--resource_monitor_interva" in task.argv
    assert task.argv[task.argv.index("--resource_monitor_interva") + 1] == "20"
    args = step.runtime_args
    assert (args.error_threshold, args.allowed_failed_percent) == (5, 30)
    assert (args.task_overhead_timeout, args.progress_update_timeout) == (1200, 600)
    assert args.copy_logs_to_parent is True
    assert args.resource_monitor_interval == 600  # the typo did not set it
    [warning] = p.warnings
    assert warning.severity == "warning"
    assert "--resource_monitor_interval" in (warning.hint or "")
    assert warning.line == line_of(IRIS, "--resource_monitor_interva")
    assert warning.field == "jobs.batch_prediction.task.program_arguments"
    assert step.locations["task.entry_script"][0] == line_of(IRIS, "entry_script:")


def test_outputs_without_path_bind_to_the_run_folder(tmp_path: Path) -> None:
    path, _ = small(tmp_path, args="--out ${{outputs.results}}")
    step = load_pipeline(path, run_dir=tmp_path / "run").jobs["score"]
    assert step.task.argv == ("--out", str(tmp_path / "run" / "score" / "outputs" / "results"))
    assert step.outputs["results"].path is None
    unbound = load_pipeline(path).jobs["score"]  # no run_dir: the binding stays as written
    assert unbound.task.argv == ("--out", "${{outputs.results}}")


def test_literal_inputs_and_spaced_bindings(tmp_path: Path) -> None:
    extra = '      n: 5\n      label: "a b"\n      flag: true\n      ratio: 0.5\n'
    path, _ = small(
        tmp_path,
        args="'--n ${{ inputs.n }} --label ${{inputs.label}} "
        "--flag=${{inputs.flag}} --r ${{inputs.ratio}} --d ${{inputs.files}}'",
        extra_inputs=extra,
    )
    step = load_pipeline(path).jobs["score"]
    assert step.inputs["n"].type == "integer" and step.inputs["n"].value == "5"
    assert step.inputs["label"].type == "string"
    assert step.task.argv == (
        "--n",
        "5",
        "--label",
        "a b",
        "--flag=True",
        "--r",
        "0.5",
        "--d",
        str(tmp_path / "data"),
    )


def test_bound_path_with_spaces_stays_one_argument(tmp_path: Path) -> None:
    (tmp_path / "my data").mkdir()
    extra = "      model: {type: uri_folder, path: './my data'}\n"
    path, _ = small(tmp_path, args="--model ${{inputs.model}}", extra_inputs=extra)
    assert load_pipeline(path).jobs["score"].task.argv == ("--model", str(tmp_path / "my data"))


def test_parent_inputs_bind_paths_and_settings(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "data").mkdir()
    path = write(
        tmp_path,
        """\
        type: pipeline
        inputs:
          images: {type: uri_folder, path: ./data}
          batch: 3
        jobs:
          score:
            type: parallel
            inputs:
              files: ${{parent.inputs.images}}
              again: {type: uri_folder, path: '${{parent.inputs.images}}', mode: download}
            input_data: ${{inputs.files}}
            mini_batch_size: ${{parent.inputs.batch}}
            task:
              type: run_function
              code: ./script
              entry_script: iris_prediction.py
        """,
    )
    p = load_pipeline(path)
    step = p.jobs["score"]
    assert p.inputs["batch"].value == "3"
    assert step.inputs["files"].path == tmp_path / "data"
    assert step.inputs["files"].name == "files"
    assert step.inputs["again"].mode == "download"
    assert step.mini_batch_size == MiniBatchSize("3", 3, None)


def test_single_parallel_job_file_is_a_one_step_pipeline(tmp_path: Path) -> None:
    make_tree(tmp_path)
    path = write(
        tmp_path,
        """\
        $schema: https://azuremlschemas.azureedge.net/latest/parallelJob.schema.json
        type: parallel
        display_name: one job
        inputs:
          data: {type: uri_folder, path: ./iris-model}
        input_data: ${{inputs.data}}
        mini_batch_size: 2
        error_threshold: 3
        partition_keys: [Store, Brand]
        environment_variables: {A: x, B: 1}
        task: {type: run_function, code: ./script, entry_script: iris_prediction.py}
        """,
        name="score-job.yml",
    )
    p = load_pipeline(path)
    step = p.jobs["score-job"]
    assert p.display_name == "one job"
    assert step.error_threshold == 3
    assert step.partition_keys == ("Store", "Brand")
    assert step.environment_variables == {"A": "x", "B": "1"}
    assert [w.message for w in p.warnings] == [
        "mini_batch_size is ignored when partition_keys is set: one mini-batch per key combination"
    ]


def test_anchors_and_merge_keys_are_understood(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path,
        "    retry_settings:\n      max_retries: 2\n      timeout: 60",
        "    retry_settings:\n      <<: {max_retries: 4, timeout: 9}\n      timeout: 30",
    )
    step = load_pipeline(path).jobs["batch_prediction"]
    assert (step.retry_settings.max_retries, step.retry_settings.timeout) == (4, 30)


def test_field_and_program_argument_disagreeing_warns(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "mini_batch_error_threshold: 5", "error_threshold: 10")
    p = load_pipeline(path)
    conflict = [w for w in p.warnings if "disagrees" in w.message]
    assert len(conflict) == 1
    assert (
        "error_threshold: 10 disagrees with the program argument --error_threshold 5"
        in conflict[0].message
    )
    assert conflict[0].line == line_of(text, "error_threshold: 10")


# -- mini_batch_size --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "count", "nbytes"),
    [
        (10, 10, None),
        ("10", 10, None),
        ("10kb", None, 10240),
        ("1MB", None, 1024**2),
        ("2gb", None, 2 * 1024**3),
        ("3Kb", None, 3072),
        ("007", 7, None),
    ],
)
def test_mini_batch_size_parses(value: str | int, count: int | None, nbytes: int | None) -> None:
    size = parse_mini_batch_size(value)
    assert (size.count, size.bytes, size.raw) == (count, nbytes, str(value))
    assert size.for_files() == (count or nbytes)
    assert size.for_tables() == (nbytes or count)


@pytest.mark.parametrize(
    "value", ["10 kb", "1b", "1kbkb", "", "-1", "abc", "0", "10\n", 0, -5, True, 1.5, "1tb"]
)
def test_mini_batch_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_mini_batch_size(value)  # type: ignore[arg-type]


# -- program arguments ------------------------------------------------------------------------
def test_program_arguments_defaults() -> None:
    args, problems = parse_program_arguments(["--model_name", "iris", "--x", "1"])
    assert args == RuntimeArgs() and problems == []
    assert args.progress_timeout(60) == 3 * (60 + 30)


def test_program_arguments_both_spellings_and_pass_through() -> None:
    args, problems = parse_program_arguments(
        [
            "--error_threshold=7",
            "--allowed_failed_count",
            "-1",
            "--logging_level",
            "debug",
            "--copy_logs_to_parent",
            "false",
            "--model_name",
            "m",
            "--progress_update_timeout",
            "90.5",
            "--append_row_file_name",
            "out.csv",
            "--profiling_module",
            "cProfile",
        ]
    )
    assert problems == []
    assert (args.error_threshold, args.allowed_failed_count) == (7, -1)
    assert (args.logging_level, args.copy_logs_to_parent) == ("DEBUG", False)
    assert args.progress_update_timeout == 90.5
    assert (args.append_row_file_name, args.profiling_module) == ("out.csv", "cProfile")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--allowed_failed_percent", "abc"], "expected a number, found 'abc'"),
        (["--allowed_failed_percent", "150"], "in [0, 100], found '150'"),
        (["--error_threshold", "-2"], ">= -1, found '-2'"),
        (["--error_threshold", "1.5"], "expected an integer"),
        (["--task_overhead_timeout", "0"], "in (0, 259200]"),
        (["--copy_logs_to_parent", "maybe"], "expected True or False"),
        (["--logging_level", "LOUD"], "expected one of DEBUG, INFO, WARNING"),
        (["--mini_batch_size", "10 kb"], "found '10 kb'"),
        (["--append_row_file_name", "a/b.txt"], "file name without"),
        (["--process_count_per_node"], "expects a value"),
        (["--process_count_per_node", "--x"], "expects a value"),
    ],
)
def test_program_arguments_bad_values_are_errors(argv: list[str], fragment: str) -> None:
    _, problems = parse_program_arguments(argv)
    assert [p.severity for p in problems] == ["error"]
    assert fragment in problems[0].message


@pytest.mark.parametrize(
    ("token", "intended"),
    [
        ("--resource_monitor_interva", "--resource_monitor_interval"),
        ("--error_treshold", "--error_threshold"),
        ("-error_threshold", "--error_threshold"),
        ("--allowed-failed-percent", "--allowed_failed_percent"),
    ],
)
def test_program_arguments_near_misses_warn(token: str, intended: str) -> None:
    args, problems = parse_program_arguments([token, "20"])
    assert args == RuntimeArgs()
    assert [p.severity for p in problems] == ["warning"]
    assert problems[0].hint == f"did you mean '{intended}'?"


# -- invalid pipelines: one mistake each -----------------------------------------------------
def test_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    path, text = iris(tmp_path, 'mini_batch_size: "10kb"', 'mini_batch_sise: "10kb"')
    d = one_error(path)
    assert "unknown key 'mini_batch_sise'" in d.message
    assert d.hint == "did you mean 'mini_batch_size'?"
    assert (d.line, d.column) == (line_of(text, "mini_batch_sise"), 5)
    assert d.field == "jobs.batch_prediction.mini_batch_sise"
    assert str(d).startswith(f"{path}:{d.line}:5: error: jobs.batch_prediction.mini_batch_sise")
    assert "\n  hint: did you mean" in str(d)


def test_misplaced_key_says_where_it_belongs(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "max_concurrency_per_instance: 2", "instance_count: 2")
    d = one_error(path)
    assert "unknown key 'instance_count'" in d.message
    assert "resources" in (d.hint or "")


def test_wrong_type_string_for_integer(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path, "max_concurrency_per_instance: 2", 'max_concurrency_per_instance: "2"'
    )
    d = one_error(path)
    assert "expected an integer >= 1, found string '2'" in d.message
    assert d.hint == "remove the quotes: 2"
    assert d.line == line_of(text, "max_concurrency_per_instance")


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "instance_count: 2", "instance_count: true")
    d = one_error(path)
    assert "found boolean true" in d.message
    assert d.line == line_of(text, "instance_count: true")


@pytest.mark.parametrize("timeout", ["0", "259201", "-5"])
def test_timeout_out_of_range(tmp_path: Path, timeout: str) -> None:
    path, text = iris(tmp_path, "timeout: 60", f"timeout: {timeout}")
    d = one_error(path)
    assert f"expected an integer in (0, 259200], found {timeout}" in d.message
    assert d.field == "jobs.batch_prediction.retry_settings.timeout"
    assert d.line == line_of(text, "timeout:")


def test_negative_max_retries(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "max_retries: 2", "max_retries: -1")
    assert ">= 0, found -1" in one_error(path).message


def test_threshold_below_minus_one(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "mini_batch_error_threshold: 5", "mini_batch_error_threshold: -2")
    assert "expected an integer >= -1, found -2" in one_error(path).message


def test_missing_input_data(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "    input_data: ${{inputs.input_data}}\n", "")
    d = one_error(path)
    assert "missing required field 'input_data'" in d.message
    assert d.line == line_of(text, "batch_prediction:")


def test_input_data_names_a_missing_input(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path, "input_data: ${{inputs.input_data}}", "input_data: ${{inputs.input_dta}}"
    )
    d = one_error(path)
    assert "names no input 'input_dta'" in d.message
    assert d.hint == "did you mean 'input_data'?"
    assert d.line == line_of(text, "${{inputs.input_dta}}")


def test_input_data_must_be_a_binding(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "input_data: ${{inputs.input_data}}", "input_data: input_data")
    d = one_error(path)
    assert "expected ${{inputs.<name>}}, found 'input_data'" in d.message
    assert d.hint == "write ${{inputs.input_data}}"


def test_append_row_to_binding_an_input(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path,
        "append_row_to: ${{outputs.job_output_file}}",
        "append_row_to: ${{inputs.score_model}}",
    )
    d = one_error(path)
    assert "append_row_to must name an output" in d.message
    assert "${{inputs.score_model}} is an input" in d.message
    assert d.hint == "did you mean ${{outputs.job_output_file}}?"
    assert d.line == line_of(text, "append_row_to:")


def test_append_row_to_unknown_output(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path,
        "append_row_to: ${{outputs.job_output_file}}",
        "append_row_to: ${{outputs.job_output}}",
    )
    d = one_error(path)
    assert "names no output 'job_output'" in d.message
    assert d.hint == "did you mean 'job_output_file'?"


def test_unknown_binding_in_program_arguments(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "--model ${{inputs.score_model}}", "--model ${{inputs.nope}}")
    d = one_error(path)
    assert "${{inputs.nope}} names no input 'nope'" in d.message
    assert d.line == line_of(text, "${{inputs.nope}}")
    assert d.column == text.splitlines()[d.line - 1].index("${{") + 1


def test_parent_binding_is_not_allowed_in_program_arguments(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path, "--model ${{inputs.score_model}}", "--model ${{parent.inputs.score_model}}"
    )
    d = one_error(path)
    assert "cannot be used in program_arguments" in d.message


def test_missing_entry_script_file(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "entry_script: iris_prediction.py", "entry_script: iris_predict.py")
    d = one_error(path)
    assert "entry script 'iris_predict.py' not found" in d.message
    assert d.hint == "did you mean 'iris_prediction.py'?"
    assert d.line == line_of(text, "entry_script:")


def test_entry_script_outside_code(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path, "entry_script: iris_prediction.py", "entry_script: ../iris_prediction.py"
    )
    assert "must be a path inside task.code" in one_error(path).message


def test_missing_code_folder(tmp_path: Path) -> None:
    path, text = iris(tmp_path, 'code: "./script"', 'code: "./scripts"')
    d = one_error(path)  # the entry script is not looked for in a folder that is missing
    assert "code folder './scripts' does not exist" in d.message
    assert d.line == line_of(text, "code:")


def test_missing_input_path(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "path: ./iris-model", "path: ./iris-models")
    d = one_error(path)
    assert "path './iris-models' does not exist" in d.message
    assert str(tmp_path / "iris-models") in d.message
    assert d.field == "jobs.batch_prediction.inputs.score_model.path"
    assert d.line == line_of(text, "./iris-models")


def test_mltable_folder_needs_an_mltable_file(tmp_path: Path) -> None:
    path, text = iris(tmp_path)
    (tmp_path / "neural-iris-mltable" / "MLTable").unlink()
    assert "no MLTable file in './neural-iris-mltable'" in one_error(path).message


def test_uri_file_input_pointing_at_a_folder(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path,
        "type: uri_folder\n        path: ./iris-model",
        "type: uri_file\n        path: ./iris-model",
    )
    assert "type uri_file expects a file" in one_error(path).message


def test_cloud_path_needs_a_datastore_folder(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path, "path: ./iris-model", "path: azureml://datastores/workspaceblobstore/paths/model"
    )
    d = one_error(path)
    assert "datastore 'workspaceblobstore' has no local folder" in d.message
    assert d.hint == "map it to one: --datastore workspaceblobstore=PATH"
    (tmp_path / "blob" / "model").mkdir(parents=True)
    step = load_pipeline(path, datastores={"workspaceblobstore": tmp_path / "blob"}).jobs[
        "batch_prediction"
    ]
    assert step.inputs["score_model"].path == tmp_path / "blob" / "model"


def test_registered_asset_is_refused(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "path: ./iris-model", "path: azureml:iris-model:1")
    d = one_error(path)
    assert "names a registered asset" in d.message and d.line == line_of(text, "azureml:iris")


def test_mode_not_allowed_for_type(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "mode: download", "mode: eval_mount")
    d = one_error(path)
    assert "unknown mode for uri_folder 'eval_mount'" in d.message
    assert d.line == line_of(text, "eval_mount")


def test_output_mode_did_you_mean(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "mode: rw_mount", "mode: rw_mont")
    assert one_error(path).hint == "did you mean 'rw_mount'?"


def test_bad_logging_level_with_did_you_mean(tmp_path: Path) -> None:
    path, text = iris(tmp_path, 'logging_level: "DEBUG"', "logging_level: warn")
    d = one_error(path)
    assert "unknown logging level 'warn'" in d.message
    assert d.hint == "did you mean 'WARNING'?"
    assert d.line == line_of(text, "logging_level")


def test_logging_level_is_case_insensitive(tmp_path: Path) -> None:
    path, _ = iris(tmp_path, 'logging_level: "DEBUG"', "logging_level: warning")
    assert load_pipeline(path).jobs["batch_prediction"].logging_level == "WARNING"


def test_mini_batch_size_with_a_space(tmp_path: Path) -> None:
    path, text = iris(tmp_path, 'mini_batch_size: "10kb"', 'mini_batch_size: "10 kb"')
    d = one_error(path)
    assert "found '10 kb'" in d.message
    assert d.hint == "write '10kb'"
    assert d.line == line_of(text, "mini_batch_size")


def test_bad_runtime_flag_value_points_at_the_flag(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "--allowed_failed_percent 30", "--allowed_failed_percent 150")
    d = one_error(path)
    assert "--allowed_failed_percent: expected a value in [0, 100], found '150'" in d.message
    assert d.line == line_of(text, "--allowed_failed_percent")


def test_unclosed_quote_in_program_arguments(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "--error_threshold 5", "--error_threshold '5")
    assert "cannot split the arguments like a shell" in one_error(path).message


def test_unclosed_optional_block(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "--error_threshold 5", "$[[--error_threshold 5")
    d = one_error(path)
    assert "never closed" in d.message and d.line == line_of(text, "$[[")


def test_malformed_yaml_reports_the_parser_position(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path, "    max_concurrency_per_instance: 2", "    max_concurrency_per_instance: [2"
    )
    d = one_error(path)
    assert d.message.startswith("invalid YAML:")
    assert d.line is not None and d.line >= line_of(text, "max_concurrency_per_instance")


def test_tab_indentation_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "type: pipeline\njobs:\n\tscore: {}\n")
    d = one_error(path)
    assert d.line == 3 and d.hint == "indent with spaces, not tabs"


def test_duplicate_key(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path,
        "    max_concurrency_per_instance: 2",
        "    max_concurrency_per_instance: 2\n    mini_batch_size: 5",
    )
    d = one_error(path)
    first = line_of(text, "mini_batch_size")
    assert f"duplicate key 'mini_batch_size' (first given on line {first})" in d.message
    assert d.line == line_of(text, "mini_batch_size", nth=1)


def test_unknown_step_type(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "    type: parallel", "    type: paralel")
    d = one_error(path)
    assert "unknown step type 'paralel'" in d.message and d.hint == "did you mean 'parallel'?"


def test_unrunnable_step_type(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "    type: parallel", "    type: spark")
    assert "steps of type 'spark' cannot run locally" in one_error(path).message


def test_missing_top_level_type(tmp_path: Path) -> None:
    path, text = iris(tmp_path, "type: pipeline\n", "")
    assert "missing required field 'type'" in one_error(path).message


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("", "the file is empty", None),
        ("# only a comment\n", "the file is empty", None),
        ("- a\n- b\n", "expected a mapping of fields at the top, found a list", 1),
        ("type: pipeline\njobs: {}\n", "the pipeline has no jobs", 2),
        ("type: pipeline\n", "missing required field 'jobs'", 1),
    ],
)
def test_empty_or_shapeless_files(
    tmp_path: Path, text: str, fragment: str, line: int | None
) -> None:
    d = one_error(write(tmp_path, text))
    assert fragment in d.message and d.line == line


def test_missing_file() -> None:
    d = one_error(Path("/nonexistent/pipeline.yml"))
    assert "no such file" in d.message and d.line is None


def test_unknown_parent_input(tmp_path: Path) -> None:
    path, text = iris(
        tmp_path,
        "      score_model: \n        type: uri_folder\n"
        "        path: ./iris-model\n        mode: download",
        "      score_model: ${{parent.inputs.model}}",
    )
    d = one_error(path)
    assert "${{parent.inputs.model}} names no pipeline input 'model'" in d.message
    assert d.hint == "the pipeline has no inputs"


def test_partition_keys_must_be_a_list(tmp_path: Path) -> None:
    path, text = iris(tmp_path, 'mini_batch_size: "10kb"', "partition_keys: Store")
    assert "expected a list of strings, found string 'Store'" in one_error(path).message


def test_multiple_errors_are_reported_together_in_source_order(tmp_path: Path) -> None:
    path, text = iris(tmp_path)
    text = (
        text.replace("path: ./iris-model", "path: ./nowhere")
        .replace("timeout: 60", "timeout: 0")
        .replace('logging_level: "DEBUG"', "logging_level: LOUD")
        .replace("entry_script: iris_prediction.py", "entry_script: missing.py")
    )
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    errors = info.value.errors
    assert len(errors) == 4
    assert [e.line for e in errors] == sorted(e.line or 0 for e in errors)
    assert [e.field.rsplit(".", 1)[-1] for e in errors] == [
        "path",
        "logging_level",
        "timeout",
        "entry_script",
    ]
    # The warning about the flag typo comes along, and str() shows everything.
    assert any(d.severity == "warning" for d in info.value.diagnostics)
    assert str(info.value).count(": error: ") == 4


def test_diagnostic_format() -> None:
    d = Diagnostic(
        "pipeline.yml",
        12,
        5,
        "jobs.score.mini_batch_size",
        "expected a size, found '10 kb'",
        "write '10kb'",
    )
    assert str(d) == (
        "pipeline.yml:12:5: error: jobs.score.mini_batch_size: expected a size, "
        "found '10 kb'\n  hint: write '10kb'"
    )
    assert str(Diagnostic("p.yml", None, None, "", "no such file")) == "p.yml: error: no such file"


def test_spec_does_not_import_the_compiled_core() -> None:
    # parajob/__init__ imports _core itself; what matters is that spec's modules don't.
    # The package as imported: the source tree, or site-packages when run against a wheel.
    src = Path(parajob.spec.__file__).parent
    for module in [*src.glob("*.py"), src.parent / "errors.py"]:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any("_core" in n for n in names), module.name
