"""Poison-item isolation (issue 14) on 20,000 images with 0.1% corrupt files, 100 per
mini-batch, 2 worker processes: what isolation costs, and what it recovers.

Run: PYTHONPATH=$PWD/python python3 -m pytest bench/test_bench_isolation.py -p no:cacheprovider
     -o faulthandler_timeout=0 -s
     (PARAJOB_BENCH_SCALE=0.1: a tenth of the images; PARAJOB_BENCH_ROUNDS=N: rounds (3);
     the clean JPEGs are bench/peers/workloads.py's, cached under
     $TMPDIR/parajob-bench-peers-jpeg-*; the corrupt set beside them, made once, under
     $TMPDIR/parajob-bench-isolation-corrupt-*: hard links to the clean files, but 20
     truncated to 40% of their bytes, one per mini-batch, so that Pillow raises on them)

    ROUNDS interleaved rounds of three `parajob run` launches (bench/peers/measure.py:
    Popen to exit, wall time), each the same job (work_files.image_batch: decode, mean
    colour; the retry settings left at their defaults):
        clean      the clean set, no isolation
        isolated   the corrupt set, --isolate_failures 2
        plain      the corrupt set, no isolation, error_threshold -1 and
                   mini_batch_error_threshold -1 (the job completes without the failed
                   mini-batches' rows)
    every run's rows are checked (the test FAILS otherwise): clean = every image once;
    isolated = every good image once, quarantine.csv = exactly the corrupt files;
    plain = every image outside the corrupt files' mini-batches.

Reported (terminal summary; JSON at $PARAJOB_BENCH_ISOLATION_JSON, default
$TMPDIR/parajob-bench-isolation-last.json): median wall per set, the throughput ratio
isolated / clean (images per second, input images for both), and the rows recovered:
isolated (expected 20,000 - 20) vs plain (expected 20,000 - 20 x 100). No duration is
asserted.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import report
from peers import jobs, measure, workloads

pytest.importorskip("PIL")

WORKERS = 2
BATCH = 100
ISOLATE = 2
CORRUPT_FRACTION = 0.001
ROUNDS = int(os.environ.get("PARAJOB_BENCH_ROUNDS", "3"))
STEP = jobs.STEP
LAST_JSON = Path(
    os.environ.get(
        "PARAJOB_BENCH_ISOLATION_JSON",
        str(Path(tempfile.gettempdir()) / "parajob-bench-isolation-last.json"),
    )
)


def images(root: Path) -> list[Path]:
    """The images of a tree in the plan's order (sorted relative paths)."""
    return sorted(root.rglob("*.jpg"), key=lambda p: str(p.relative_to(root)))


def corrupt_indexes(n: int) -> list[int]:
    """0.1% of n, spread: one per stretch of n // k, each in a mini-batch of its own."""
    k = max(1, round(n * CORRUPT_FRACTION))
    stretch = n // k
    return [j * stretch + (37 * j + 11) % min(BATCH, stretch) for j in range(k)]


def corrupt_set(clean: Path) -> tuple[Path, list[str]]:
    """data/ beside a complete marker: the clean tree's files hard-linked (copied where a
    link cannot be made), the corrupt ones rewritten truncated. Returns (root, the corrupt
    files' relative paths)."""
    files = images(clean)
    bad = corrupt_indexes(len(files))
    base = Path(tempfile.gettempdir()) / f"parajob-bench-isolation-corrupt-{len(files)}"
    root = base / "data"
    names = [str(files[i].relative_to(clean)) for i in bad]
    if not (base / "complete").exists():
        shutil.rmtree(base, ignore_errors=True)
        for path in files:
            target = root / path.relative_to(clean)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        for name in names:
            data = (clean / name).read_bytes()
            target = root / name
            target.unlink()  # a new inode: the clean file behind the link is kept
            target.write_bytes(data[: int(len(data) * 0.4)])
        (base / "complete").touch()
    from PIL import Image

    for name in names:  # each corrupt file does make the decoder raise
        with pytest.raises(OSError):
            with Image.open(root / name) as image:
                image.convert("RGB")
    return root, names


def write_job(folder: Path, data: Path, program_arguments: str = "", extra: str = "") -> Path:
    """The images workload's job (bench/peers/jobs.py) at BATCH images per mini-batch."""
    return jobs.write_job(
        folder,
        "images",
        data,
        WORKERS,
        mini_batch_size=str(BATCH),
        program_arguments=program_arguments,
        extra=extra,
    )


def rows_of(run_dir: Path) -> list[str]:
    out = run_dir / STEP / "outputs" / "out"
    return [line.split(" ", 1)[0] for line in out.read_text(encoding="utf-8").splitlines()]


def test_isolation_on_corrupt_images(tmp_path: Path) -> None:
    measure.compile_packages()
    clean = workloads.jpegs()
    corrupt, bad = corrupt_set(clean)
    files = images(clean)
    n = len(files)
    names = [p.name for p in files]
    bad_names = {Path(b).name for b in bad}
    bad_batches = {names.index(b) // BATCH for b in bad_names}
    expected = {
        "clean": names,
        "isolated": [x for x in names if x not in bad_names],
        "plain": [x for i, x in enumerate(names) if i // BATCH not in bad_batches],
    }
    jobs = {
        "clean": write_job(tmp_path / "clean", clean),
        "isolated": write_job(
            tmp_path / "isolated", corrupt, program_arguments=f"--isolate_failures {ISOLATE}"
        ),
        "plain": write_job(
            tmp_path / "plain",
            corrupt,
            extra="    error_threshold: -1\n    mini_batch_error_threshold: -1\n",
        ),
    }
    workloads.warm(clean)
    workloads.warm(corrupt)
    load = [os.getloadavg()[0]]
    walls: dict[str, list[float]] = {k: [] for k in jobs}
    rows: dict[str, int] = {}
    details: dict[str, Any] = {}
    for round_ in range(ROUNDS):
        for label, pipeline in jobs.items():
            run_dir = tmp_path / f"{label}-run{round_}"
            cmd = measure.python("-m", "parajob", "run", str(pipeline), "--quiet")
            launched = measure.launch([*cmd, "--run-dir", str(run_dir)])
            assert launched.returncode == 0, f"{label}: {launched.stderr[-3000:]}"
            got = rows_of(run_dir)
            assert got == expected[label], (
                f"{label}: {len(got)} rows, {len(expected[label])} expected"
            )
            result = json.loads((run_dir / STEP / "logs" / "job_result.json").read_text())
            if label == "isolated":
                with (run_dir / STEP / "logs" / "quarantine.csv").open(newline="") as f:
                    listed = sorted(Path(r["item"]).name for r in csv.DictReader(f))
                assert listed == sorted(bad_names), listed
            attempts = run_dir / STEP / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
            with attempts.open(newline="") as f:
                log = list(csv.DictReader(f))
            total = result["total_batches"]
            walls[label].append(launched.wall_s)
            rows[label] = len(got)
            details[label] = {
                "rows": len(got),
                "total_batches": total,
                "failed_batches": result["failed_batches"],
                "failed_items": result["failed_items"],
                "failed_attempts": result["failed_attempts"],
                "attempts": len(log),
                "sub_batch_attempts": sum(1 for r in log if int(r["index"]) >= total),
                "quarantined_items": result.get("quarantined_items", 0),
                "max_retries": result.get("settings", {}).get("limits", {}).get("max_retries"),
                "peak_rss_mib": launched.peak_rss_mib,
            }
            shutil.rmtree(run_dir)
    load.append(os.getloadavg()[0])
    median = {k: statistics.median(v) for k, v in walls.items()}
    ratio = median["clean"] / median["isolated"]  # images/s isolated over images/s clean
    results = {
        "images": n,
        "corrupt": len(bad),
        "mini_batch_size": BATCH,
        "workers": WORKERS,
        "isolate_failures": ISOLATE,
        "rounds": ROUNDS,
        "scale": os.environ.get("PARAJOB_BENCH_SCALE", "1"),
        "walls_s": walls,
        "median_s": median,
        "throughput_images_per_s": {k: n / v for k, v in median.items()},
        "throughput_ratio_isolated_vs_clean": ratio,
        "plain_vs_clean": median["clean"] / median["plain"],
        "rows": rows,
        "rows_expected": {k: len(v) for k, v in expected.items()},
        "rows_recovered_isolated_vs_plain": rows["isolated"] - rows["plain"],
        "details": details,
        "load_1min": load,
    }
    LAST_JSON.write_text(json.dumps(results, indent=1), encoding="utf-8")
    report(
        f"isolation: {n} 64x64 JPEGs, {len(bad)} corrupt, {BATCH} per mini-batch, "
        f"{WORKERS} workers, medians of {ROUNDS} interleaved rounds (load {load[0]:.1f} -> "
        f"{load[1]:.1f}; JSON: {LAST_JSON}):"
    )
    for label in jobs:
        d = details[label]
        report(
            f"  {label:9s} {median[label]:7.2f} s  {n / median[label]:8.0f} images/s  "
            f"{rows[label]:6d} rows  {d['failed_attempts']} failed attempts, "
            f"{d['sub_batch_attempts']} sub-batch attempts, {d['quarantined_items']} quarantined"
        )
    report(f"  throughput isolated / clean: {ratio:.3f}x")
    report(
        f"  rows recovered: isolated {rows['isolated']} vs plain {rows['plain']} "
        f"(+{rows['isolated'] - rows['plain']})"
    )
