"""What a node of a Dask cluster run gives its workers: GPUs by the node's own numbering
(a real node's GPUs are its own), where nodes simulated on one machine share its GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli, write_job

from parajob.runtime.worker import gpu_for

GPUS = ("3", "4", "5")


@pytest.mark.parametrize(
    "node, rank, shared, expected",
    [
        (0, 0, True, "3"),
        (0, 1, True, "4"),
        (1, 0, True, "5"),
        (1, 1, True, None),
        (0, 0, False, "3"),
        (0, 1, False, "4"),
        (1, 0, False, "3"),
        (1, 1, False, "4"),
        (2, 2, False, "5"),
        (5, 3, False, None),
    ],
)
def test_gpus_are_numbered_across_simulated_nodes_and_by_rank_on_a_real_node(
    node: int, rank: int, shared: bool, expected: str | None
) -> None:
    assert gpu_for(GPUS, 2, node, rank, nodes_share_gpus=shared) == expected


GPU_SCRIPT = """
import os

def init():
    print("gpu=" + os.environ.get("CUDA_VISIBLE_DEVICES", "none"), flush=True)

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""


def _gpus_seen(run_dir: Path) -> dict[str, str]:
    """node/process -> the CUDA_VISIBLE_DEVICES its init() saw (its stdout log)."""
    logs = run_dir / "step" / "logs" / "user" / "stdout"
    return {
        f"{p.parent.name}/{p.name.split('.')[0]}": p.read_text().split("gpu=")[1].strip()
        for p in sorted(logs.glob("node*/process*.stdout.txt"))
    }


def test_each_cluster_node_gives_its_workers_its_own_gpus(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from dask_cluster import DaskCluster

    pipeline = write_job(
        tmp_path,
        GPU_SCRIPT,
        files=8,
        mini_batch_size=1,
        concurrency=2,
        instances=2,
        extra_step="compute: cpu-cluster\n",
    )
    gpus = {"CUDA_VISIBLE_DEVICES": "3,4"}  # each node machine has two GPUs
    local = run_cli(
        "run", str(pipeline), "--run-dir", str(tmp_path / "local"), cwd=tmp_path, env=gpus
    )
    assert local.returncode == 0, local.stderr
    # One machine, two simulated nodes: its two GPUs go to node 0; node 1's workers get no
    # GPU of their own (they keep the variable as it was).
    assert _gpus_seen(tmp_path / "local") == {
        "node000/process001": "3",
        "node000/process002": "4",
        "node001/process001": "3,4",
        "node001/process002": "3,4",
    }
    cluster = DaskCluster.start(tmp_path / "dask", 2, env=gpus)
    try:
        remote = run_cli(
            "run",
            str(pipeline),
            "--run-dir",
            str(tmp_path / "remote"),
            "--compute",
            f"cpu-cluster={cluster.address}",
            cwd=tmp_path,
        )
    finally:
        cluster.stop()
    assert remote.returncode == 0, remote.stderr
    assert _gpus_seen(tmp_path / "remote") == {
        "node000/process001": "3",
        "node000/process002": "4",
        "node001/process001": "3",
        "node001/process002": "4",
    }
