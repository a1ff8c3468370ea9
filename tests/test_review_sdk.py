"""A user's-eye review of the SDK builder and map_batches (issue 9): what an Azure SDK
script does that the builder got wrong, each pinned by a test that runs it for real.

The scripts follow azureml-examples' notebooks (sdk/python/jobs/pipelines/
1g_pipeline_with_parallel_nodes: ``node.inputs.x.mode = ...`` and
``pipeline_job.outputs.x.type = ...``), with the working directory in tmp_path; the
pipelines run through ``parajob.run`` in this process.
"""

from __future__ import annotations

import io
import os
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import make_files

import parajob
from parajob import Input, Output, dsl
from parajob.errors import SpecError, ValidationError
from parajob.parallel import RunFunction, parallel_run_function

ENTRY = textwrap.dedent("""\
    import argparse, os

    def init():
        global model
        parser = argparse.ArgumentParser()
        parser.add_argument("--model")
        model = parser.parse_known_args()[0].model

    def run(mini_batch):
        return [os.path.basename(p) + " " + model for p in mini_batch]
    """)


def scorer() -> parajob.parallel.Parallel:
    return parallel_run_function(
        name="score",
        inputs=dict(
            data=Input(type="uri_folder", description="files to score"),
            model=Input(type="uri_folder", description="the model"),
        ),
        outputs=dict(scores=Output(type="uri_file")),
        input_data="${{inputs.data}}",
        mini_batch_size="2",
        task=RunFunction(
            code="./src",
            entry_script="entry.py",
            program_arguments="--model ${{inputs.model}}",
            append_row_to="${{outputs.scores}}",
        ),
    )


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text(ENTRY, encoding="utf-8")
    make_files(tmp_path / "data", 4)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("w", encoding="utf-8")
    return tmp_path


# -- settings made on a node's inputs (1g: batch_inference.inputs.job_data_path.mode = ...) --
def test_a_mode_set_on_a_node_input_is_written_and_honoured(sources: Path) -> None:
    """``node.inputs.model.mode = "download"`` (the input bound to a pipeline input) was
    silently dropped: the YAML had no mode and the step read the original folder."""
    score = scorer()

    @dsl.pipeline()
    def scoring(data: Input, model: Input) -> None:
        scored = score(data=data, model=model)
        scored.inputs.model.mode = "download"
        scored.outputs.scores.path = "./scores.txt"

    job = scoring(data=Input(path="./data"), model=Input(path="./model"))
    assert job.jobs["scored"].inputs.model.mode == "download"
    assert "mode: download" in job.to_yaml()
    assert parajob.load(job.dump(sources / "p.yml")) == job
    result = parajob.run(job, run_dir=sources / "run")
    assert result.status == "succeeded", result.reason
    rows = (sources / "scores.txt").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4
    # downloaded: the step read a copy inside the run folder, not ./model itself
    models = {row.split(" ", 1)[1] for row in rows}
    assert len(models) == 1
    seen = Path(models.pop())
    assert seen != sources / "model" and (sources / "run") in seen.parents
    assert (seen / "weights.txt").read_text(encoding="utf-8") == "w"


def test_a_bad_mode_set_on_a_node_input_is_refused_naming_the_field(sources: Path) -> None:
    """A mode that does not fit the input's type reaches validation (it was dropped)."""
    score = scorer()

    @dsl.pipeline()
    def scoring(data: Input) -> None:
        scored = score(data=data, model=Input(path="./model"))
        scored.inputs.data.mode = "eval_mount"  # only mltable inputs have eval_mount

    job = scoring(data=Input(path="./data"))
    with pytest.raises(SpecError, match=r"jobs\.scored\.inputs\.data\.mode"):
        parajob.load(job.to_yaml(), base_dir=sources)


def test_type_description_and_path_of_a_node_input_can_be_set_as_in_the_sdk(sources: Path) -> None:
    """The SDK's NodeInput has setters for type, mode, description and path; here type and
    path raised AttributeError and description was dropped. A setting is made on a copy of
    the bound Input (which another node may share), and a new binding starts afresh."""
    score = scorer()
    shared = Input(path="./model")

    @dsl.pipeline()
    def scoring() -> None:
        first = score(model=shared)
        first.inputs.data.path = "./data"  # unbound: an Input of the declared type
        first.inputs.model.description = "weights, v2"
        first.inputs.model.type = "custom_model"
        second = score(data=first.outputs.scores, model=shared)
        with pytest.raises(ValidationError, match="does not support setting path"):
            second.inputs.data.path = "./elsewhere"
        second.inputs.data.mode = "download"  # beside the binding to first's output
        second.inputs.data.type = "uri_file"  # what first's output is
        second.inputs.model = Input(path="./model")

    job = scoring()
    first, second = job.jobs["first"], job.jobs["second"]
    assert first.inputs.data.path == "./data" and first.inputs.data.type == "uri_folder"
    assert first.inputs.model.description == "weights, v2"
    assert first.inputs.model.type == "custom_model"
    assert shared.type == "uri_folder" and shared.description is None
    assert second.inputs.data.mode == "download"
    tree = job._to_dict()["jobs"]
    assert tree["first"]["inputs"]["data"] == {
        "type": "uri_folder",
        "description": "files to score",
        "path": "./data",
    }
    assert tree["first"]["inputs"]["model"]["type"] == "custom_model"
    assert tree["first"]["inputs"]["model"]["description"] == "weights, v2"
    assert tree["second"]["inputs"]["data"]["mode"] == "download"
    assert tree["second"]["inputs"]["data"]["type"] == "uri_file"
    assert tree["second"]["inputs"]["data"]["path"] == "${{parent.jobs.first.outputs.scores}}"
    assert tree["second"]["inputs"]["model"] == {
        "type": "uri_folder",
        "path": "./model",
        "description": "the model",
    }
    assert parajob.load(job.to_yaml(), base_dir=sources) == job


# -- pipeline ports by attribute (1g: pipeline_job.outputs.pipeline_job_out.type = ...) ------
def test_a_pipelines_inputs_and_outputs_are_reachable_as_attributes(sources: Path) -> None:
    """``pipeline_job.outputs.<name>`` raised AttributeError: a plain dict."""
    score = scorer()

    @dsl.pipeline()
    def scoring(data: Input, model: Input) -> dict[str, object]:
        scored = score(data=data, model=model)
        return {"scores": scored.outputs.scores}

    job = scoring(data=Input(path="./elsewhere"), model=Input(path="./model"))
    job.inputs.data.path = "./data"
    job.outputs.scores.path = "./all_scores.txt"
    assert job.outputs["scores"].path == "./all_scores.txt"
    with pytest.raises(ValidationError, match="unexpected attribute 'score'.*'scores'"):
        job.outputs.score  # noqa: B018 (the attribute access is the test)
    assert parajob.load(job.to_yaml(), base_dir=sources) == job
    result = parajob.run(job, run_dir=sources / "run")
    assert result.status == "succeeded", result.reason
    assert len((sources / "all_scores.txt").read_text(encoding="utf-8").splitlines()) == 4


# -- README promises of the builder that had no test -----------------------------------------
def test_cluster_only_settings_are_warned_about_by_name_on_load_and_compute_is_recorded(
    sources: Path,
) -> None:
    """README: instance_type, docker_args, shm_size and identity "are warned about by name
    when it is loaded"; "compute is recorded in logs/environment.txt"."""
    (sources / "src" / "plain.py").write_text(
        "def run(mini_batch):\n    return mini_batch\n", encoding="utf-8"
    )
    comp = parallel_run_function(
        name="score",
        inputs={"data": Input(type="uri_folder", path="./data")},
        input_data="${{inputs.data}}",
        compute="gpu-cluster",
        instance_type="Standard_NC6",
        docker_args="--ipc=host",
        shm_size="2g",
        identity={"type": "managed"},
        task=RunFunction(code="./src", entry_script="plain.py"),
    )
    job = parajob.Pipeline(jobs={"score": comp()})
    loaded = parajob.load(job.dump(sources / "p.yml"))
    warned = [d.field for d in loaded.warnings]
    assert warned == [
        "jobs.score.resources.instance_type",
        "jobs.score.resources.docker_args",
        "jobs.score.resources.shm_size",
        "jobs.score.identity",
    ]
    assert all("has no effect here" in d.message for d in loaded.warnings)
    result = parajob.run(loaded, run_dir=sources / "run")
    assert result.status == "succeeded", result.reason
    recorded = (sources / "run" / "score" / "logs" / "environment.txt").read_text("utf-8")
    assert "gpu-cluster -> this machine" in recorded


# -- load_component as the SDK's (1a_pipeline_with_components_from_yaml) ----------------------
TRAIN_COMPONENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: train_model
display_name: Train Model
version: 0.0.1
inputs:
  training_data:
    type: uri_folder
  max_epochs:
    type: integer
    default: 3
  learning_rate:
    type: number
    default: 0.01
  learning_rate_schedule:
    type: string
    default: time-based
outputs:
  model_output:
    type: uri_folder
code: ./train_src
environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:1
command: >-
  python train.py
  --training_data ${{inputs.training_data}}
  --max_epochs ${{inputs.max_epochs}}
  --learning_rate ${{inputs.learning_rate}}
  --learning_rate_schedule ${{inputs.learning_rate_schedule}}
  --model_output ${{outputs.model_output}}
"""

TRAIN = """\
import os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
os.makedirs(args["--model_output"], exist_ok=True)
files = sorted(os.listdir(args["--training_data"]))
with open(os.path.join(args["--model_output"], "model.txt"), "w") as f:
    f.write(" ".join([args["--max_epochs"], args["--learning_rate"],
                      args["--learning_rate_schedule"], str(len(files))]))
"""

SCORE_COMPONENT = """\
type: command
name: score_data
inputs:
  model_input:
    type: uri_folder
outputs:
  score_output:
    type: uri_folder
code: ./score_src
command: >-
  python score.py ${{inputs.model_input}} ${{outputs.score_output}}
"""

SCORE = """\
import os, shutil, sys
os.makedirs(sys.argv[2], exist_ok=True)
shutil.copy(os.path.join(sys.argv[1], "model.txt"), os.path.join(sys.argv[2], "scored.txt"))
"""


def test_load_component_takes_the_sdks_deprecated_path_and_an_open_file(sources: Path) -> None:
    """1a_pipeline_with_components_from_yaml calls ``load_component(path=...)`` (the SDK's
    deprecated name for source, with a DeprecationWarning): it raised "needs source=";
    an open file raised TypeError from os.fspath."""
    for folder, name, text, script, code in (
        ("train_src", "train_model.yml", TRAIN_COMPONENT, "train.py", TRAIN),
        ("score_src", "score_data.yml", SCORE_COMPONENT, "score.py", SCORE),
    ):
        (sources / name).write_text(text, encoding="utf-8")
        (sources / folder).mkdir()
        (sources / folder / script).write_text(code, encoding="utf-8")
    parent_dir = "."
    with pytest.warns(DeprecationWarning, match="Please use 'source' instead"):
        train_model = parajob.load_component(path=parent_dir + "/train_model.yml")
    with open(sources / "score_data.yml", encoding="utf-8") as f:
        score_data = parajob.load_component(source=f)

    @dsl.pipeline()
    def pipeline_with_components_from_yaml(
        training_input: Input,
        training_max_epochs: int = 20,
        training_learning_rate: float = 1.8,
        learning_rate_schedule: str = "time-based",
    ) -> dict[str, object]:
        """E2E dummy train-score pipeline with components defined via yaml."""
        train_with_sample_data = train_model(
            training_data=training_input,
            max_epochs=training_max_epochs,
            learning_rate=training_learning_rate,
            learning_rate_schedule=learning_rate_schedule,
        )
        score_with_sample_data = score_data(model_input=train_with_sample_data.outputs.model_output)
        score_with_sample_data.outputs.score_output.mode = "upload"
        return {"scored_data": score_with_sample_data.outputs.score_output}

    job = pipeline_with_components_from_yaml(
        training_input=Input(type="uri_folder", path=parent_dir + "/data/"), training_max_epochs=7
    )
    job.settings.default_compute = "cpu-cluster"
    job.outputs.scored_data.path = "./scored"
    assert job.jobs["score_with_sample_data"].component == str(sources / "score_data.yml")
    assert parajob.load(job.dump(sources / "p.yml")) == job
    result = parajob.run(job, run_dir=sources / "run")
    assert result.status == "succeeded", result.reason
    assert (sources / "scored" / "scored.txt").read_text(encoding="utf-8") == "7 1.8 time-based 4"

    with pytest.raises(ValidationError, match="found StringIO"):
        parajob.load_component(source=io.StringIO(SCORE_COMPONENT))


def test_printing_a_component_or_a_node_shows_its_yaml(sources: Path) -> None:
    """``print(train_model)`` (1a) and ``print(node)`` showed ``<... object at 0x...>``;
    the SDK prints the YAML. A node bound to another's output names it."""
    (sources / "score_data.yml").write_text(SCORE_COMPONENT, encoding="utf-8")
    score_data = parajob.load_component(source="score_data.yml")
    assert str(score_data).splitlines() == ["type: command", "component: score_data.yml"]
    assert repr(score_data) == "Command(name='score_data', component='score_data.yml')"
    score = scorer()
    assert "entry_script: entry.py" in str(score) and repr(score) == "Parallel(name='score')"

    @dsl.pipeline()
    def scoring(data: Input) -> None:
        first = score(data=data, model=Input(path="./model"))
        score_data(model_input=first.outputs.scores)

    job = scoring(data=Input(path="./data"))
    assert "model_input: ${{parent.jobs.first.outputs.scores}}" in str(job.jobs["score_data"])


# -- a sub-pipeline (the SDK makes it a pipeline component node) --------------------------------
def test_a_pipeline_function_called_inside_another_is_refused_not_dropped(sources: Path) -> None:
    """The inner pipeline's steps were silently left out, and binding to its outputs
    crashed the YAML dump with yaml's RepresenterError (a traceback from parajob)."""
    score = scorer()

    @dsl.pipeline()
    def inner() -> dict[str, object]:
        first = score(data=Input(path="./data"), model=Input(path="./model"))
        return {"scores": first.outputs.scores}

    @dsl.pipeline()
    def outer() -> None:
        sub = inner()
        score(data=sub.outputs.scores, model=Input(path="./model"))

    with pytest.raises(
        ValidationError,
        match=r"inner\(\): a dsl.pipeline function called "
        "inside another one",
    ):
        outer()
    assert list(inner().jobs) == ["first"]  # the failed build left no builder behind

    built = inner()

    @dsl.pipeline()
    def after() -> None:
        score(data=built.outputs.scores, model=Input(path="./model"))

    with pytest.raises(ValidationError, match="input 'data' is bound to an Output declaration"):
        after().to_yaml()


# -- map_batches -----------------------------------------------------------------------------
def test_serial_with_stream_runs_fn_in_this_process_in_the_streams_thread() -> None:
    """README: serial=True runs fn "in the calling process and thread"; a stream's job runs
    in its background thread, serial or not, which the README now says."""
    caller = threading.get_ident()

    def where(batch: list[int]) -> list[tuple[int, bool]]:
        return [(os.getpid(), threading.get_ident() == caller) for _ in batch]

    with parajob.map_batches(where, [1, 2, 3], serial=True, stream=True) as stream:
        streamed = list(stream)
    assert streamed == [(os.getpid(), False)] * 3
    assert parajob.map_batches(where, [1, 2, 3], serial=True).results == [(os.getpid(), True)] * 3


def test_a_stopped_map_names_map_batches_to_finish_it_never_parajob_run(tmp_path: Path) -> None:
    """The reason said "resume with: parajob run --resume <folder>": a map's folder has no
    pipeline for the CLI, and a temporary one (in-memory items) cannot be resumed at all."""
    make_files(tmp_path / "in", 3)
    stop = threading.Event()
    stop.set()
    with pytest.raises(parajob.MapCancelled) as cancelled:
        parajob.map_batches(lambda batch: batch, [1, 2, 3], cancel=stop)
    assert str(cancelled.value) == "map_batches was cancelled: cancelled by the caller"
    assert cancelled.value.run.reason == "map: cancelled by the caller"
    folder, run_dir = str(tmp_path / "in"), str(tmp_path / "run")
    with pytest.raises(parajob.MapCancelled) as cancelled:
        parajob.map_batches(lambda batch: batch, folder, cancel=stop, run_dir=run_dir)
    hint = f"resume with: map_batches(fn, {folder!r}, run_dir={run_dir!r}, resume=True)"
    assert str(cancelled.value).endswith(hint)
    assert "parajob run" not in str(cancelled.value.run.to_dict())
    result = parajob.map_batches(
        lambda batch: [os.path.basename(p) for p in batch], folder, run_dir=run_dir, resume=True
    )
    assert result.results == ["f00000.txt", "f00001.txt", "f00002.txt"]


# -- an output's registered name (node.outputs.<port>.name / .version, as in the SDK) ---------
def test_naming_a_node_output_names_its_asset_not_its_port(sources: Path) -> None:
    """``node.outputs.scores.name = "my_scores"`` (the SDK's name to register the output
    under) renamed the port: the next step was bound to ``outputs.my_scores``, which the
    step does not have; ``version`` was dropped."""
    score = scorer()

    @dsl.pipeline()
    def scoring(data: Input, model: Input) -> dict[str, object]:
        first = score(data=data, model=model)
        first.outputs.scores.name = "my_scores"
        first.outputs.scores.version = "1"
        second = score(data=Input(path="./data"), model=model)
        second.inputs.data = first.outputs.scores
        second.inputs.data.type = "uri_file"
        returned = score(data=data, model=model)
        returned.outputs.scores.name = "kept"
        return {"kept_scores": returned.outputs.scores}

    job = scoring(data=Input(path="./data"), model=Input(path="./model"))
    first = job.jobs["first"].outputs.scores
    assert (first.port_name, first.name, first.version) == ("scores", "my_scores", "1")
    tree = job._to_dict()
    assert tree["jobs"]["first"]["outputs"]["scores"] == {
        "type": "uri_file",
        "name": "my_scores",
        "version": "1",
    }
    assert (
        tree["jobs"]["second"]["inputs"]["data"]["path"] == "${{parent.jobs.first.outputs.scores}}"
    )
    # returned as a pipeline output, the name goes with the other settings (the SDK's
    # copy_output_setting copies path, name and version)
    assert tree["outputs"]["kept_scores"] == {"type": "uri_file", "name": "kept"}
    assert parajob.load(job.dump(sources / "p.yml")) == job


def test_a_setting_set_that_is_not_modelled_is_written_and_named_not_dropped(sources: Path) -> None:
    """``job.settings.on_init = "setup"`` (an SDK PipelineJobSettings field) vanished from
    the YAML; now it is written, and validation names it as it names it in a YAML."""
    setup = parajob.command(name="setup", command="echo setup")
    job = parajob.Pipeline(jobs={"setup": setup})
    job.settings.on_init = "setup"
    job.settings.continue_on_step_failure = True
    assert job.settings.on_init == "setup"
    assert job._to_dict()["settings"] == {"continue_on_step_failure": True, "on_init": "setup"}
    with pytest.raises(SpecError, match=r"settings\.on_init: unknown key 'on_init'"):
        parajob.load(job.to_yaml(), base_dir=sources)
    retry = parajob.parallel.RetrySettings(max_retries=1)
    retry.timeout = 5
    assert retry._to_dict() == {"max_retries": 1, "timeout": 5}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        retry.nope  # noqa: B018 (the attribute access is the test)
