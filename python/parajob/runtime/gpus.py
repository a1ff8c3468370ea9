"""Which GPUs this machine lets the job use (docs/contract.md §2.1, §3.3).

On Azure each worker on a GPU node gets ``CUDA_VISIBLE_DEVICES=<index>`` while GPUs remain
(workers beyond the GPU count get no variable), ``AZ_BATCHAI_GPU_COUNT_FOUND`` holds the
count, and ``max_concurrency_per_instance`` defaults to 1 instead of the number of cores
(docs/contract.md §3.3, §2.1).

The list comes from, in order: ``CUDA_VISIBLE_DEVICES`` of the driver (so a user, or a
test, can restrict or simulate the set; empty or ``-1`` means none), the NVIDIA driver's
``/proc/driver/nvidia/gpus`` (no process started), then ``nvidia-smi -L``. Called by the
driver before it forks, never by workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["visible_gpus"]

_PROC = Path("/proc/driver/nvidia/gpus")


def visible_gpus() -> list[str]:
    """The GPU ids a worker may be given, as CUDA_VISIBLE_DEVICES values."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = [g.strip() for g in given.split(",") if g.strip()]
        # CUDA stops at the first invalid id; "-1" is the usual way to hide every GPU.
        valid: list[str] = []
        for gpu in ids:
            if gpu.startswith("-") or gpu.lower() == "nodevfiles":
                break
            valid.append(gpu)
        return valid
    try:
        count = sum(1 for _ in _PROC.iterdir())
    except OSError:
        count = 0
    if count:
        return [str(i) for i in range(count)]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)]
