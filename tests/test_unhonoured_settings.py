"""Settings of the Azure schema that only a cloud machine could honour are warned about by
name when given, never accepted in silence (a user who asked for a GPU VM or an identity
must learn that it has no effect here), and the job still runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import make_files, run_cli

PARALLEL = """\
type: pipeline
identity: {type: managed}
jobs:
  step:
    type: parallel
    inputs:
      data: {type: uri_folder, path: ./data}
    input_data: ${{inputs.data}}
    mini_batch_size: "2"
    resources:
      instance_count: 1
      instance_type: Standard_NC6
      shm_size: 2g
      docker_args: --ipc=host
      max_instance_count: 4
    identity: {type: user_identity}
    task:
      type: run_function
      code: ./src
      entry_script: entry.py
"""

COMMAND = """\
type: command
command: echo hi
resources:
  instance_type: Standard_D2
queue_settings: {job_tier: spot}
services:
  my_jupyter: {type: jupyter_lab}
"""


def test_cloud_machine_settings_of_a_parallel_step_are_warned_by_name(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 4)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("def run(mb):\n    return mb\n")
    (tmp_path / "p.yml").write_text(PARALLEL)
    proc = run_cli("run", "p.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for key in ("instance_type", "shm_size", "docker_args", "max_instance_count"):
        assert f"resources.{key} has no effect here" in proc.stderr, (key, proc.stderr)
    assert proc.stderr.count("identity has no effect here") == 2  # the pipeline's, the step's
    # validate says the same, without running
    proc = run_cli("validate", "p.yml", cwd=tmp_path)
    assert proc.returncode == 0 and "resources.instance_type has no effect" in proc.stderr


def test_cloud_settings_of_a_command_job_are_warned_by_name(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text(textwrap.dedent(COMMAND))
    proc = run_cli("validate", "c.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resources.instance_type has no effect here" in proc.stderr
    assert "queue_settings has no effect here" in proc.stderr
    assert "services has no effect here" in proc.stderr
