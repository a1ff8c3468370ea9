"""The peers: one workload through one runner, in this (fresh) process.

    python -m peers.runners RUNNER WORKLOAD DATA OUT [--chunksize N] [--workers W]

    DATA --units()--> units --RUNNER(fn over units, W processes)--> text --> OUT
          listing (os.scandir walk), CSV byte ranges aligned to newlines, Parquet row
          groups, or (partitions) the parent's read + groupby, streamed

Every runner calls the same unit function (work_files.py / work_tables.py, the functions
parajob's entry scripts call) and writes what it returns to OUT as results arrive (order
is the runner's; the bench compares multisets of lines). Pools are started before the
parent reads anything (fork first, then threads: the partitions parent reads with Arrow's
threads). --chunksize is the number of units per message (Pool / ProcessPoolExecutor
chunksize, joblib batch_size, units per Dask / Ray task); the bench tunes it for the Pool.
"""

from __future__ import annotations

import argparse
import functools
import io
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TextIO

from peers import work_files

CSV_RANGE_BYTES = 1 << 20  # the peers' byte ranges: parajob's mini_batch_size "1MB"
FILES_PER_UNIT = {"tiny-1": 1, "tiny-100": 100, "images": 10, "first-run": 1, "listing": 1}


# ---------------------------------------------------------------- the units


def list_files(root: str) -> list[str]:
    """Every file under root, as a user lists a folder (os.scandir, no sort, no stat)."""
    out: list[str] = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    out.append(entry.path)
    return out


def csv_ranges(path: str) -> list[tuple[str, int, int, list[str]]]:
    """(path, start, end, column names) per ~1 MiB of rows, cut after a newline."""
    ranges = []
    with open(path, "rb") as f:
        names = f.readline().decode("ascii").rstrip("\r\n").split(",")
        start, total = f.tell(), os.fstat(f.fileno()).st_size
        while start < total:
            f.seek(min(start + CSV_RANGE_BYTES, total))
            f.readline()  # to the end of the row the cut falls in
            end = min(f.tell(), total)
            ranges.append((path, start, end, names))
            start = end
    return ranges


def groups(path: str) -> Iterator[Any]:
    """The table read in the parent (pandas with Arrow's parser: its fastest reader here),
    then one DataFrame per (store, brand), streamed (groupby keeps the file's row order)."""
    import pandas as pd

    df = pd.read_csv(path, engine="pyarrow")
    for _key, group in df.groupby(["store", "brand"], sort=False):
        yield group


def units(workload: str, data: str) -> Iterable[Any]:
    if workload in FILES_PER_UNIT:
        paths = list_files(data)
        if workload in ("tiny-1", "listing"):
            return paths
        k = FILES_PER_UNIT[workload]
        return [paths[i : i + k] for i in range(0, len(paths), k)]
    if workload == "table-csv":
        return csv_ranges(os.path.join(data, "sales.csv"))
    if workload == "table-parquet":
        import pyarrow.parquet as pq

        path = os.path.join(data, "sales.parquet")
        return [(path, g) for g in range(pq.ParquetFile(path).metadata.num_row_groups)]
    if workload == "partitions":
        return groups(os.path.join(data, "sales.csv"))
    raise SystemExit(f"unknown workload {workload!r}")


# ---------------------------------------------------------------- the unit functions


def tiny_one(path: str) -> str:
    return work_files.tiny_row(path) + "\n"


def tiny_batch(paths: list[str]) -> str:
    return "".join(r + "\n" for r in work_files.tiny_batch(paths))


def image_batch(paths: list[str]) -> str:
    return "".join(r + "\n" for r in work_files.image_batch(paths))


def score_csv_range(unit: tuple[str, int, int, list[str]]) -> str:
    import pandas as pd

    from peers import work_tables

    path, start, end, names = unit
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    df = pd.read_csv(io.BytesIO(data), header=None, names=names)
    return work_tables.lines(work_tables.score(df))


def score_row_group(unit: tuple[str, int]) -> str:
    import pyarrow.parquet as pq

    from peers import work_tables

    path, group = unit
    df = pq.ParquetFile(path).read_row_group(group).to_pandas()
    return work_tables.lines(work_tables.score(df))


def fit_group(df: Any) -> str:
    from peers import work_tables

    return work_tables.lines(work_tables.fit(df))


def stamp_batch(paths: list[str]) -> str:
    return "".join(r + "\n" for r in work_files.stamp_batch(paths))


def nothing(path: str) -> str:
    return ""


def no_init() -> None:
    pass


def tables_init() -> None:
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401


FUNCTIONS: dict[str, tuple[Callable[[Any], str], Callable[[], None]]] = {
    "tiny-1": (tiny_one, no_init),
    "tiny-100": (tiny_batch, no_init),
    "images": (image_batch, work_files.image_init),
    "table-csv": (score_csv_range, tables_init),
    "table-parquet": (score_row_group, tables_init),
    "partitions": (fit_group, tables_init),
    "first-run": (stamp_batch, no_init),
    "listing": (nothing, no_init),  # the listing alone (its memory)
}


def run_chunk(fn: Callable[[Any], str], chunk: list[Any]) -> str:
    return "".join(fn(u) for u in chunk)


def chunked(items: Iterable[Any], size: int) -> list[list[Any]]:
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------- the runners


def serial(workload: str, data: str, fn: Any, init: Any, out: TextIO, c: int, w: int) -> None:
    init()
    for unit in units(workload, data):
        out.write(fn(unit))


def pool(workload: str, data: str, fn: Any, init: Any, out: TextIO, c: int, w: int) -> None:
    with multiprocessing.get_context("fork").Pool(w, initializer=init) as p:
        for text in p.imap_unordered(fn, units(workload, data), chunksize=c):
            out.write(text)


def executor(workload: str, data: str, fn: Any, init: Any, out: TextIO, c: int, w: int) -> None:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(w, mp_context=context, initializer=init) as ex:
        ex.submit(no_init).result()  # forks every worker now (fork context), before reading
        for text in ex.map(fn, units(workload, data), chunksize=c):
            out.write(text)


def joblib_loky(workload: str, data: str, fn: Any, init: Any, out: TextIO, c: int, w: int) -> None:
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=w, backend="loky", batch_size=c, return_as="generator_unordered")
    for text in parallel(delayed(fn)(u) for u in units(workload, data)):
        out.write(text)


def dask(workload: str, data: str, fn: Any, init: Any, out: TextIO, c: int, w: int) -> None:
    from distributed import Client, LocalCluster, as_completed

    with (
        LocalCluster(n_workers=w, threads_per_worker=1, processes=True) as cluster,  # type: ignore[no-untyped-call]
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.run(init)
        chunks = chunked(units(workload, data), c)
        futures = client.map(functools.partial(run_chunk, fn), chunks, pure=False)
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            out.write(future.result())


def ray(workload: str, data: str, fn: Any, init: Any, out: TextIO, c: int, w: int) -> None:
    """Ray Data: chunks of units as rows, mapped by w tasks (not run on the dev machine:
    ray is not installed there; the bench skips it with that reason)."""
    import ray as ray_mod

    ray_mod.init(num_cpus=w, include_dashboard=False, log_to_driver=False)
    chunks = chunked(units(workload, data), c)
    dataset = ray_mod.data.from_items([{"chunk": chunk} for chunk in chunks])
    mapped = dataset.map(lambda row: {"text": run_chunk(fn, row["chunk"])}, concurrency=w)
    for row in mapped.iter_rows():
        out.write(row["text"])


RUNNERS = {
    "serial": serial,
    "pool": pool,
    "executor": executor,
    "joblib": joblib_loky,
    "dask": dask,
    "ray": ray,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m peers.runners")
    parser.add_argument("runner", choices=sorted(RUNNERS))
    parser.add_argument("workload", choices=sorted(FUNCTIONS))
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--chunksize", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    fn, init = FUNCTIONS[args.workload]
    with open(args.out, "w", encoding="utf-8") as out:
        RUNNERS[args.runner](args.workload, args.data, fn, init, out, args.chunksize, args.workers)


if __name__ == "__main__":
    main()
