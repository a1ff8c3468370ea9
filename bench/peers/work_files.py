"""The work of the file workloads, called by parajob's entry scripts and every peer.

    tiny_row(path)   -> "name length"            one tiny file
    image_row(path)  -> "name mean_r mean_g mean_b"  one JPEG decoded with Pillow
    *_batch(paths)   -> one row per path, in order (a parajob mini-batch, a peer's unit)
    stamp_batch(paths)  tiny_batch, after appending time.time() to $PARAJOB_BENCH_STAMPS
                        (the first-run() measure: when did the work start?)

Only the image functions import numpy and Pillow (in image_init, and in image_row if
it was not called), so the tiny workload's workers import nothing heavy, in parajob as in
every peer.
"""

from __future__ import annotations

import os
import time


def tiny_row(path: str) -> str:
    with open(path, "rb") as f:
        return f"{os.path.basename(path)} {len(f.read())}"


def tiny_batch(paths: list[str]) -> list[str]:
    return [tiny_row(p) for p in paths]


def image_init() -> None:
    """A worker's initializer: the imports every image row needs, once per process."""
    import numpy  # noqa: F401
    from PIL import Image  # noqa: F401


def image_row(path: str) -> str:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    r, g, b = pixels.reshape(-1, 3).mean(axis=0)
    return f"{os.path.basename(path)} {r:.4f} {g:.4f} {b:.4f}"


def image_batch(paths: list[str]) -> list[str]:
    return [image_row(p) for p in paths]


def stamp_batch(paths: list[str]) -> list[str]:
    with open(os.environ["PARAJOB_BENCH_STAMPS"], "a", encoding="ascii") as f:
        f.write(f"{time.time()!r}\n")  # one small O_APPEND write: whole lines
    return tiny_batch(paths)


def count(paths: list[str]) -> list[str]:
    """One row per mini-batch (append_row needs some row: an all-empty output fails)."""
    return [str(len(paths))]
