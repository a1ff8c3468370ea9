"""parajob.spec for pipelines of several steps: the graph, components, command steps,
bindings in output paths, datastores, optional blocks, --set, and which value wins when a
field and a program argument disagree."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from parajob.errors import Diagnostic, SpecError
from parajob.spec import CommandStep, MiniBatchSize, ParallelStep, load_pipeline


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pipeline.yml"


def tree(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "a.txt").write_text("a")
    (root / "src").mkdir()
    (root / "src" / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")


def errors_of(path: Path, **kwargs: object) -> list[Diagnostic]:
    with pytest.raises(SpecError) as info:
        load_pipeline(path, **kwargs)  # type: ignore[arg-type]
    return info.value.errors


PARALLEL = """\
    type: parallel
    inputs:
      data: {data}
    outputs:
      out: {{type: uri_file}}
    input_data: ${{{{inputs.data}}}}
    task:
      type: run_function
      code: ./src
      entry_script: score.py
      program_arguments: {args}
      append_row_to: ${{{{outputs.out}}}}
"""


def parallel(data: str = "{type: uri_folder, path: ./data}", args: str = "''") -> str:
    return textwrap.indent(textwrap.dedent(PARALLEL).format(data=data, args=args), "    ")


# -- the graph -----------------------------------------------------------------------------
def test_steps_run_producers_first_and_read_their_outputs(tmp_path: Path) -> None:
    tree(tmp_path)
    path = write(
        tmp_path,
        {
            "pipeline.yml": "type: pipeline\njobs:\n  score:\n"
            + parallel("${{parent.jobs.prep.outputs.files}}", "'--extra ${{inputs.data}}'")
            + """\
  prep:
    type: command
    inputs:
      raw: {type: uri_folder, path: ./data}
    outputs:
      files: {type: uri_folder}
    command: cp -r ${{inputs.raw}}/. ${{outputs.files}}
"""
        },
    )
    run = tmp_path / "run"
    p = load_pipeline(path, run_dir=run)
    assert list(p.jobs) == ["score", "prep"]  # YAML order
    assert p.run_order() == ["prep", "score"]
    score, prep = p.jobs["score"], p.jobs["prep"]
    assert isinstance(score, ParallelStep) and isinstance(prep, CommandStep)
    assert score.depends_on == ("prep",)
    produced = run / "prep" / "outputs" / "files"
    assert score.inputs["data"].path == produced
    assert score.inputs["data"].producer == ("prep", "files")
    assert score.inputs["data"].type == "uri_folder"
    assert score.task.argv == ("--extra", str(produced))
    assert prep.command == f"cp -r {tmp_path / 'data'}/. {produced}"
    # Without a run folder the producer's path is not known: the binding stays as written.
    unbound = load_pipeline(path).jobs["score"]
    assert isinstance(unbound, ParallelStep)
    assert unbound.inputs["data"].path is None
    assert unbound.task.argv == ("--extra", "${{inputs.data}}")


def test_three_step_cycle_is_reported_once(tmp_path: Path) -> None:
    def step(reads: str) -> str:
        return (
            f"  {reads[0]}:\n    type: command\n    inputs:\n"
            f"      x: ${{{{parent.jobs.{reads[1]}.outputs.o}}}}\n"
            f"    outputs:\n      o: {{type: uri_folder}}\n    command: 'true'\n"
        )

    path = write(
        tmp_path, {"pipeline.yml": "type: pipeline\njobs:\n" + step("ab") + step("bc") + step("ca")}
    )
    [d] = errors_of(path)
    assert "the steps form a cycle: a -> c -> b -> a" in d.message
    assert d.field == "jobs.a.inputs.x" and d.line == 6


def test_consumer_type_must_match_the_producer(tmp_path: Path) -> None:
    tree(tmp_path)
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
        type: pipeline
        jobs:
          prep:
            type: command
            outputs:
              file: {type: uri_file}
            command: echo x > ${{outputs.file}}
          use:
            type: command
            inputs:
              folder: {type: uri_folder, path: '${{parent.jobs.prep.outputs.file}}'}
            command: ls ${{inputs.folder}}
        """
        },
    )
    [d] = errors_of(path)
    assert (
        "input 'folder' is a uri_folder but ${{parent.jobs.prep.outputs.file}} is a "
        "uri_file" in d.message
    )
    assert d.hint == "declare the input as type: uri_file"


# -- components ----------------------------------------------------------------------------
COMPONENT = """\
    $schema: https://azuremlschemas.azureedge.net/latest/parallelComponent.schema.json
    type: parallel
    version: 1
    inputs:
      files: {type: uri_folder, mode: download}
      label: {type: string, default: plain, enum: [plain, fancy]}
      extra: {type: integer, optional: true, min: 1, max: 9}
    outputs:
      out: {type: uri_file}
    input_data: ${{inputs.files}}
    mini_batch_size: "5"
    max_concurrency_per_instance: 2
    retry_settings: {max_retries: 2, timeout: 30}
    environment_variables: {A: component, B: component}
    task:
      type: run_function
      code: ./code
      entry_script: score.py
      program_arguments: >-
        --label ${{inputs.label}} $[[--extra ${{inputs.extra}}]] --out ${{outputs.out}}
      append_row_to: ${{outputs.out}}
"""


def component_tree(root: Path, node: str) -> Path:
    tree(root)
    (root / "components" / "code").mkdir(parents=True)
    (root / "components" / "code" / "score.py").write_text("def run(b):\n    return b\n")
    return write(
        root,
        {
            "components/score.yml": COMPONENT,
            "pipeline.yml": "type: pipeline\njobs:\n  score:\n"
            + textwrap.indent(textwrap.dedent(node), "    "),
        },
    )


def test_component_fields_merge_with_the_node(tmp_path: Path) -> None:
    path = component_tree(
        tmp_path,
        """\
        type: parallel
        component: ./components/score.yml
        inputs:
          files: {path: ./data}
        mini_batch_size: "3"
        retry_settings: {max_retries: 4}
        environment_variables: {B: node}
        """,
    )
    run = tmp_path / "run"
    step = load_pipeline(path, run_dir=run).jobs["score"]
    assert isinstance(step, ParallelStep)
    assert step.component == tmp_path / "components" / "score.yml"
    assert step.mini_batch_size == MiniBatchSize("3", 3, None)  # the node's value
    assert step.max_concurrency_per_instance == 2  # the component's
    assert (step.retry_settings.max_retries, step.retry_settings.timeout) == (4, 30)
    assert step.environment_variables == {"A": "component", "B": "node"}
    # Paths in the component are relative to the component's folder; the node's to its own.
    assert step.task.code == tmp_path / "components" / "code"
    files = step.inputs["files"]
    assert (files.type, files.mode, files.origin) == ("uri_folder", "download", tmp_path / "data")
    assert files.path == run / "score" / "inputs" / "files"
    # The default fills `label`; the optional `extra` is not given: its block vanishes.
    out = str(run / "score" / "outputs" / "out")
    assert step.task.argv == ("--label", "plain", "--out", out)
    assert step.inputs["extra"].provided is False


def test_optional_component_input_when_given(tmp_path: Path) -> None:
    path = component_tree(
        tmp_path,
        """\
        component: ./components/score.yml
        inputs:
          files: {path: ./data}
          label: fancy
          extra: 3
        """,
    )
    step = load_pipeline(path).jobs["score"]
    assert isinstance(step, ParallelStep) and step.type == "parallel"  # type from the component
    assert step.task.argv[:4] == ("--label", "fancy", "--extra", "3")


@pytest.mark.parametrize(
    ("node_input", "fragment"),
    [
        ("label: shiny", "components/score.yml allows for 'label': plain, fancy"),
        ("extra: 12", "expected a value in [1, 9] for 'extra', found 12"),
        ("extra: many", "expected an integer, found string 'many'"),
        (
            "label: {type: uri_folder, path: ./data}",
            "declares input 'label' as string, found uri_folder",
        ),
    ],
)
def test_component_input_values_are_checked(tmp_path: Path, node_input: str, fragment: str) -> None:
    path = component_tree(
        tmp_path,
        f"""\
        component: ./components/score.yml
        inputs:
          files: {{path: ./data}}
          {node_input}
        """,
    )
    [d] = errors_of(path)
    assert fragment in d.message
    assert d.file == str(path) and d.line == 7


def test_node_output_not_declared_by_the_component(tmp_path: Path) -> None:
    path = component_tree(
        tmp_path,
        """\
        component: ./components/score.yml
        inputs:
          files: {path: ./data}
        outputs:
          outt: {type: uri_file}
        """,
    )
    [d] = errors_of(path)
    assert "declares no output 'outt'" in d.message and d.hint == "did you mean 'out'?"


def test_registered_component_cannot_be_fetched(tmp_path: Path) -> None:
    path = component_tree(tmp_path, "type: parallel\ncomponent: azureml:score:1\n")
    [d] = errors_of(path)
    assert "is a registered component, which parajob cannot fetch" in d.message


# -- output paths and datastores -----------------------------------------------------------
def test_output_path_templates(tmp_path: Path) -> None:
    tree(tmp_path)
    text = (
        "type: pipeline\nsettings:\n  default_datastore: azureml:mystore\njobs:\n  score:\n"
        + parallel().replace(
            "out: {type: uri_file}",
            "out: {type: uri_file, path: "
            "'azureml://datastores/${{default_datastore}}/paths/${{ name }}/${{output_name}}.csv'}",
        )
    )
    path = write(tmp_path, {"pipeline.yml": text})
    run, store = tmp_path / "runs" / "r1", tmp_path / "store"
    p = load_pipeline(path, run_dir=run, datastores={"mystore": store})
    assert p.default_datastore == "mystore"
    out = p.jobs["score"].outputs["out"]
    assert out.path == store / "r1-score" / "out.csv"
    assert out.written is not None and out.written.startswith("azureml://datastores/")
    # Unmapped: under the run folder. No run folder: not known yet.
    assert (
        load_pipeline(path, run_dir=run).jobs["score"].outputs["out"].path
        == run / "datastores" / "mystore" / "r1-score" / "out.csv"
    )
    assert load_pipeline(path).jobs["score"].outputs["out"].path is None


def test_datastore_path_cannot_climb_out(tmp_path: Path) -> None:
    tree(tmp_path)
    path = write(
        tmp_path,
        {
            "pipeline.yml": "type: pipeline\njobs:\n  score:\n"
            + parallel("{type: uri_folder, path: 'azureml://datastores/blob/paths/../../etc'}")
        },
    )
    [d] = errors_of(path, datastores={"blob": tmp_path})
    assert "climbs out of datastore 'blob'" in d.message


# -- program arguments win ------------------------------------------------------------------
def test_program_arguments_win_over_fields(tmp_path: Path) -> None:
    tree(tmp_path)
    text = (
        "type: pipeline\njobs:\n  score:\n"
        + parallel(
            args="'--error_threshold 5 --allowed_failed_count 2 --process_count_per_node 3 "
            "--mini_batch_size 7 --run_invocation_timeout 90 --logging_level warning'"
        )
        + textwrap.indent(
            textwrap.dedent("""\
        error_threshold: 10
        mini_batch_error_threshold: 4
        max_concurrency_per_instance: 1
        mini_batch_size: "2"
        logging_level: DEBUG
        retry_settings: {timeout: 60}
        """),
            "    ",
        )
    )
    path = write(tmp_path, {"pipeline.yml": text})
    p = load_pipeline(path)
    step = p.jobs["score"]
    assert isinstance(step, ParallelStep)
    assert step.error_threshold == 5
    assert step.mini_batch_error_threshold == 2
    assert step.max_concurrency_per_instance == 3
    assert step.mini_batch_size == MiniBatchSize("7", 7, None)
    assert step.retry_settings.timeout == 90
    assert step.logging_level == "WARNING"
    disagree = sorted(w.field.rsplit(".", 1)[-1] for w in p.warnings if "disagrees" in w.message)
    assert disagree == [
        "error_threshold",
        "logging_level",
        "max_concurrency_per_instance",
        "mini_batch_error_threshold",
        "mini_batch_size",
        "timeout",
    ]


# -- command steps ---------------------------------------------------------------------------
def test_command_binding_quotes_paths_and_keeps_literals(tmp_path: Path) -> None:
    (tmp_path / "my data").mkdir()
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
        type: pipeline
        jobs:
          prep:
            type: command
            inputs:
              raw: {type: uri_folder, path: ./my data}
              keys: Store,Brand
              opt: {type: string, optional: true}
            command: >-
              python prep.py --raw ${{inputs.raw}} --keys ${{inputs.keys}}
              $[[--opt ${{inputs.opt}}]] --out ${{outputs.out}}
            outputs:
              out: {type: mltable}
            environment_variables: {MODE: fast}
            limits: {timeout: 30}
            environment: azureml:AzureML-sklearn-1.0:1
        """
        },
    )
    step = load_pipeline(path, run_dir=tmp_path / "run").jobs["prep"]
    assert isinstance(step, CommandStep)
    assert step.command == (
        f"python prep.py --raw '{tmp_path / 'my data'}' --keys Store,Brand"
        f"  --out {tmp_path / 'run' / 'prep' / 'outputs' / 'out'}"
    )
    assert (step.timeout, step.environment_variables) == (30, {"MODE": "fast"})
    assert step.environment == "azureml:AzureML-sklearn-1.0:1"


def test_single_command_job_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "hello.yml": """\
        $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
        type: command
        command: echo hello
        """
        },
    )
    p = load_pipeline(tmp_path / "hello.yml")
    assert p.single_job and list(p.jobs) == ["hello"] and p.jobs["hello"].type == "command"
    assert path.name == "pipeline.yml"


# -- --set ------------------------------------------------------------------------------------
def test_set_overrides_values_and_creates_keys(tmp_path: Path) -> None:
    tree(tmp_path)
    text = (
        "type: pipeline\njobs:\n  score:\n"
        + parallel()
        + "    retry_settings: &retry {max_retries: 1, timeout: 5}\n"
        + "  other:\n"
        + parallel()
        + "    retry_settings: *retry\n"
    )
    path = write(tmp_path, {"pipeline.yml": text})
    p = load_pipeline(
        path,
        overrides=[
            "jobs.score.mini_batch_size=10kb",
            "jobs.score.resources.instance_count=3",
            "jobs.score.retry_settings.timeout=99",
            "jobs.score.inputs.data.mode=download",
            "jobs.score.environment_variables={A: 1}",
        ],
    )
    score, other = p.jobs["score"], p.jobs["other"]
    assert isinstance(score, ParallelStep) and isinstance(other, ParallelStep)
    assert score.mini_batch_size == MiniBatchSize("10kb", None, 10240)
    assert score.instance_count == 3
    assert score.retry_settings.timeout == 99
    assert other.retry_settings.timeout == 5  # the shared anchor was copied, not changed
    assert score.inputs["data"].mode == "download"
    assert score.environment_variables == {"A": "1"}


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        ("jobs.score.mini_batch_size=10 kb", "jobs.score.mini_batch_size", "found '10 kb'"),
        ("jobs.scor.mini_batch_size=2", "jobs.scor", "the pipeline has no step 'scor'"),
        (
            "jobs.score.retry_settings.timout=2",
            "jobs.score.retry_settings.timout",
            "unknown key 'timout'",
        ),
        (
            "jobs.score.task.entry_script.x=1",
            "jobs.score.task.entry_script.x",
            "'jobs.score.task.entry_script' is string 'score.py', not a mapping",
        ),
        ("mini_batch_size", "", "expected --set KEY=VALUE"),
    ],
)
def test_set_overrides_are_validated(
    tmp_path: Path, override: str, field: str, fragment: str
) -> None:
    tree(tmp_path)
    path = write(tmp_path, {"pipeline.yml": "type: pipeline\njobs:\n  score:\n" + parallel()})
    [d] = errors_of(path, overrides=[override])
    assert d.file == f"--set {override}" and d.line is None
    assert d.field == field and fragment in d.message
    assert str(d).startswith(f"--set {override}: error: ")


# -- optional blocks and MLTable ---------------------------------------------------------------
def test_optional_block_of_a_given_input_is_kept(tmp_path: Path) -> None:
    tree(tmp_path)
    text = "type: pipeline\njobs:\n  score:\n" + parallel(
        args="'--a 1 $[[--model ${{inputs.data}} ]] --b 2'"
    )
    step = load_pipeline(write(tmp_path, {"pipeline.yml": text})).jobs["score"]
    assert isinstance(step, ParallelStep)
    assert step.task.argv == ("--a", "1", "--model", str(tmp_path / "data"), "--b", "2")


def test_nested_optional_blocks_are_refused(tmp_path: Path) -> None:
    tree(tmp_path)
    text = "type: pipeline\njobs:\n  score:\n" + parallel(args="'$[[ a $[[ b ]] ]]'")
    [d] = errors_of(write(tmp_path, {"pipeline.yml": text}))
    assert "cannot be nested" in d.message


def test_mltable_with_patterns_and_folders_loads(tmp_path: Path) -> None:
    tree(tmp_path)
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "MLTable").write_text(
        "paths:\n  - pattern: ./**/*.csv\n  - folder: ../data\n"
        "transformations:\n  - read_delimited: {delimiter: ','}\n"
    )
    text = "type: pipeline\njobs:\n  score:\n" + parallel("{type: mltable, path: ./table}")
    step = load_pipeline(write(tmp_path, {"pipeline.yml": text})).jobs["score"]
    assert step.inputs["data"].type == "mltable"


# -- robustness ----------------------------------------------------------------------------
_SHAPES = ["~", "7", "x", "'${{inputs.nope}}'", "[1, a]", "{a: 1}"]


def _value_lines(text: str) -> list[int]:
    return [
        i
        for i, line in enumerate(text.splitlines())
        if ":" in line and not line.lstrip().startswith(("#", "-"))
    ]


@pytest.mark.parametrize(
    ("example", "mutated"),
    [
        ("iris", "pipeline.yml"),
        ("mnist", "pipeline.yml"),
        ("mnist", "script/predict_digits_mnist.yml"),
        ("mnist", "script/prepare_data.yml"),
    ],
)
def test_no_value_of_another_shape_crashes_the_loader(
    tmp_path: Path, example: str, mutated: str
) -> None:
    """Each value of a real pipeline (or component) replaced by values of other shapes: the
    loader either accepts the result or reports it (SpecError), never fails otherwise."""
    import shutil

    folder = tmp_path / example
    shutil.copytree(Path(__file__).parent / "data" / "pipelines" / example, folder)
    original = (folder / mutated).read_text()
    lines = original.splitlines()
    for index in _value_lines(original):
        key = lines[index].split(":", 1)[0]
        for shape in _SHAPES:
            changed = lines[:index] + [f"{key}: {shape}"] + lines[index + 1 :]
            (folder / mutated).write_text("\n".join(changed) + "\n")
            try:
                load_pipeline(
                    folder / "pipeline.yml",
                    run_dir=tmp_path / "run",
                    overrides=[f"jobs.x{index}={shape}"] if index % 7 == 0 else [],
                )
            except SpecError as exc:
                assert exc.errors, (index, shape)
