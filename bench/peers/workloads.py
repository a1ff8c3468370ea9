"""Issue 13's inputs, seeded and made once, cached under $TMPDIR/parajob-bench-peers-*.

    sizes()          the sizes at PARAJOB_BENCH_SCALE (default 1: the issue's sizes)
    tiny_files()     N files of a few bytes, 1000 per folder             (100,000)
    jpegs()          N 64x64 RGB JPEGs of seeded noise, made in a Pool    (20,000)
    sales_csv()      the sales table as CSV + MLTable (read_delimited)    (2,001,000 rows)
    sales_parquet()  the same rows as Parquet + MLTable (read_parquet)
    empty_files()    N empty files for the plan-memory measure            (1,000,000)
    ten_files()      10 tiny files (the first-run() measure)

Every cache folder is named by its size and holds a `complete` marker written last, so a
generator killed halfway is redone, and a finished one is never rewritten (the same rule
as bench/conftest.py's cached_file_tree). Generation is vectorised (numpy + Arrow's CSV
writer): the 149 MB CSV takes a few seconds, the JPEGs ~10 s on 2 cores.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STORES = 100  # store 1..100
BRANDS = tuple(
    f"{a}_{b}"
    for a in ("tropicana", "minute_maid", "dominicks", "florida_natural", "simply_orange")
    for b in ("premium", "original", "low_acid", "calcium", "pulp_free", "family_pack")
)  # 30 brands x 100 stores = 3,000 (store, brand) partitions
REGIONS = (
    "north_east_sales_zone",
    "south_east_sales_zone",
    "mid_west_sales_zone",
    "pacific_coast_sales_zone",
)
COLUMNS = ("row_id", "date", "store", "brand", "price", "promo", "units", "region")
FILES_PER_FOLDER = 1000


@dataclass(frozen=True)
class Sizes:
    tiny_files: int
    jpegs: int
    sales_rows: int
    empty_files: int


def sizes() -> Sizes:
    """The issue's sizes times PARAJOB_BENCH_SCALE (e.g. 0.1 for a quick check)."""
    scale = float(os.environ.get("PARAJOB_BENCH_SCALE", "1"))
    return Sizes(
        tiny_files=max(100, round(100_000 * scale)),
        jpegs=max(100, round(20_000 * scale)),
        sales_rows=max(10_000, round(2_001_000 * scale)),
        empty_files=max(1000, round(1_000_000 * scale)),
    )


def _cache(name: str) -> tuple[Path, bool]:
    """(folder, complete?) of one cached input; an incomplete folder is emptied first."""
    base = Path(tempfile.gettempdir()) / f"parajob-bench-peers-{name}"
    if (base / "complete").exists():
        return base, True
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    return base, False


def _file_tree(root: Path, n: int, content: list[bytes] | None) -> None:
    for i in range(n):
        if i % FILES_PER_FOLDER == 0:
            folder = root / f"{i // FILES_PER_FOLDER:04d}"
            folder.mkdir(parents=True)
        with open(folder / f"{i:07d}.txt", "wb") as f:
            if content is not None:
                f.write(content[i])


def tiny_files() -> Path:
    """data/: tiny text files of 1..40 bytes, 1000 per folder."""
    n = sizes().tiny_files
    base, done = _cache(f"tiny-{n}")
    if not done:
        rng = np.random.default_rng(1301)
        lengths = rng.integers(1, 41, size=n)
        _file_tree(base / "data", n, [b"x" * int(k) for k in lengths])
        (base / "complete").touch()
    return base / "data"


def ten_files() -> Path:
    """data/: 10 tiny files."""
    base, done = _cache("ten")
    if not done:
        _file_tree(base / "data", 10, [b"x" * (i + 1) for i in range(10)])
        (base / "complete").touch()
    return base / "data"


def empty_files() -> Path:
    """data/: empty files, 1000 per folder (the listing and plan are all that cost)."""
    n = sizes().empty_files
    base, done = _cache(f"empty-{n}")
    if not done:
        _file_tree(base / "data", n, None)
        (base / "complete").touch()
    return base / "data"


def _write_jpegs(args: tuple[Path, int, int]) -> None:
    from PIL import Image

    root, start, end = args
    for i in range(start, end):
        rng = np.random.default_rng(1302 + i)
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        folder = root / f"{i // FILES_PER_FOLDER:04d}"
        Image.fromarray(pixels, "RGB").save(folder / f"{i:07d}.jpg", quality=90)


def jpegs() -> Path:
    """data/: 64x64 RGB JPEGs of seeded noise (one seed per image), 1000 per folder."""
    n = sizes().jpegs
    base, done = _cache(f"jpeg-{n}")
    if not done:
        root = base / "data"
        for k in range(0, n, FILES_PER_FOLDER):
            (root / f"{k // FILES_PER_FOLDER:04d}").mkdir(parents=True)
        spans = [(root, k, min(n, k + 500)) for k in range(0, n, 500)]
        with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
            pool.map(_write_jpegs, spans)
        (base / "complete").touch()
    return base / "data"


def sales_table(rows: int) -> object:
    """The sales rows as an Arrow table (seeded): ~75 bytes per CSV row."""
    import pyarrow as pa

    rng = np.random.default_rng(1303)
    days = rng.integers(0, 730, size=rows).astype("timedelta64[D]")
    return pa.table(
        {
            "row_id": np.arange(rows, dtype=np.int64),
            "date": pa.array(np.datetime64("2024-01-01") + days, pa.date32()),
            "store": rng.integers(1, STORES + 1, size=rows),
            "brand": np.array(BRANDS)[rng.integers(0, len(BRANDS), size=rows)],
            "price": np.round(rng.uniform(0.5, 250.0, size=rows), 2),
            "promo": rng.integers(0, 2, size=rows),
            "units": rng.integers(0, 100, size=rows),
            "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), size=rows)],
        }
    )


MLTABLE_CSV = """\
type: mltable
paths:
  - file: ./sales.csv
transformations:
  - read_delimited: {delimiter: ',', header: all_files_same_headers, encoding: ascii}
"""
MLTABLE_PARQUET = """\
type: mltable
paths:
  - file: ./sales.parquet
transformations:
  - read_parquet: {}
"""


def sales_csv() -> Path:
    """data/: sales.csv (header + rows, unquoted) and its MLTable."""
    import pyarrow.csv as pacsv

    n = sizes().sales_rows
    base, done = _cache(f"sales-csv-{n}")
    if not done:
        root = base / "data"
        root.mkdir()
        with open(root / "sales.csv", "wb") as f:
            f.write((",".join(COLUMNS) + "\n").encode())
            options = pacsv.WriteOptions(include_header=False, quoting_style="none")
            pacsv.write_csv(sales_table(n), f, options)
        (root / "MLTable").write_text(MLTABLE_CSV, encoding="utf-8")
        (base / "complete").touch()
    return base / "data"


# Rows per Parquet row group: ~1.1 MB compressed each, so parajob's "1MB" mini-batch is one
# row group (parquet.py cuts at row groups once their compressed bytes reach the target)
# and the peers read the same unit.
PARQUET_ROW_GROUP = 80_000


def sales_parquet() -> Path:
    """data/: sales.parquet (the CSV's rows, row groups of PARQUET_ROW_GROUP) + MLTable."""
    import pyarrow.parquet as pq

    n = sizes().sales_rows
    base, done = _cache(f"sales-parquet-{n}")
    if not done:
        root = base / "data"
        root.mkdir()
        pq.write_table(sales_table(n), root / "sales.parquet", row_group_size=PARQUET_ROW_GROUP)
        (root / "MLTable").write_text(MLTABLE_PARQUET, encoding="utf-8")
        (base / "complete").touch()
    return base / "data"


def warm(root: Path) -> None:
    """Read every file under root once, so that every runner finds a warm page cache."""
    for folder, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                while f.read(1 << 24):
                    pass
