"""The ratio table, from the JSON the last bench run left: for the terminal and RESULTS.md.

    bench/test_bench_peers.py --writes--> $TMPDIR/parajob-bench-peers-last.json
                                              |
    python -m peers.results [--json J] [--write bench/RESULTS.md] [--note TEXT]
                                              v
                     the table (workload | serial | each peer | parajob | ratio), the
                     extra measures (first run(), plan memory), the machine, versions

The JSON holds every round's seconds and peak RSS per runner; medians are taken here, so
the table can be redone from the same run with another layout.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

LAST_JSON = Path(tempfile.gettempdir()) / "parajob-bench-peers-last.json"
REPO = Path(__file__).resolve().parent.parent.parent
PEERS = ("pool", "executor", "joblib", "dask", "ray")
NAMES = {
    "serial": "serial",
    "pool": "Pool",
    "executor": "ProcessPoolExecutor",
    "joblib": "joblib/loky",
    "dask": "Dask LocalCluster",
    "ray": "Ray Data",
    "parajob": "parajob",
}
# workload -> minimum parajob-vs-best-peer ratio (issue 13's acceptance)
TARGETS = {
    "tiny-100": 1.2,
    "tiny-1": 1.2,
    "images": 1.1,
    "table-csv": 1.5,
    "table-parquet": 1.5,
    "partitions": 1.3,
}
SCALING_TARGET = 0.95  # images: (serial / workers) / parajob
FIRST_RUN_TARGET_S = 0.3
PLAN_RSS_TARGET_MIB = 200.0


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def best_peer(case: dict[str, Any]) -> tuple[str, float] | None:
    peers = [(r, median(case["runs"][r])) for r in PEERS if case["runs"].get(r)]
    return min(peers, key=lambda kv: kv[1]) if peers else None


def ratio(case: dict[str, Any]) -> float | None:
    """Best peer's median / parajob's median (> 1: parajob is faster)."""
    best = best_peer(case)
    if best is None or not case["runs"].get("parajob"):
        return None
    return best[1] / median(case["runs"]["parajob"])


def scaling(case: dict[str, Any]) -> float | None:
    """(serial / workers) / parajob: 1.0 is perfect scaling."""
    runs = case["runs"]
    if not runs.get("serial") or not runs.get("parajob"):
        return None
    return median(runs["serial"]) / int(case["workers"]) / median(runs["parajob"])


def _cell(case: dict[str, Any], runner: str) -> str:
    runs = case["runs"].get(runner)
    if not runs:
        return "skipped" if runner in case.get("skipped", {}) else "-"
    text = f"{median(runs):.2f} s"
    if len(runs) == 1:
        text += " (1 run)"
    if runner == "pool" and case.get("chunksize"):
        text += f" c={case['chunksize']}"
    return text


def table(results: dict[str, Any]) -> list[str]:
    """The markdown table: one row per workload, medians."""
    head = ["workload", "serial", *(NAMES[p] for p in PEERS), "parajob", "parajob vs best peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, case in results["workloads"].items():
        r, best = ratio(case), best_peer(case)
        verdict = "-"
        if r is not None and best is not None:
            target = TARGETS[name]
            verdict = f"{r:.2f}x vs {NAMES[best[0]]} (target >= {target}x: "
            verdict += "met)" if r >= target else "NOT MET)"
        s = scaling(case)
        if name == "images" and s is not None:
            met = "met" if s >= SCALING_TARGET else "NOT MET"
            verdict += f"; {s:.0%} of perfect scaling ({met}: >= {SCALING_TARGET:.0%})"
        cells = [case["title"], _cell(case, "serial"), *(_cell(case, p) for p in PEERS)]
        lines.append("| " + " | ".join([*cells, _cell(case, "parajob"), verdict]) + " |")
    return lines


def extras(results: dict[str, Any]) -> list[str]:
    """The first run() after launch, the plan memory, the drivers' peak RSS."""
    out = []
    first = results.get("first_run")
    if first:
        p, pool = median(first["parajob"]), median(first["pool"])
        met = "met" if p <= FIRST_RUN_TARGET_S else "NOT MET"
        out.append(
            f"- First `run()` after launch (10-file job, 1 file per mini-batch, medians of "
            f"{len(first['parajob'])}): parajob {p:.3f} s ({met}: <= {FIRST_RUN_TARGET_S} s), "
            f"a plain Pool script {pool:.3f} s."
        )
    plan = results.get("plan")
    if plan:
        met = "met" if plan["parajob_mib"] < PLAN_RSS_TARGET_MIB else "NOT MET"
        out.append(
            f"- Driver peak RSS, `parajob run` over {plan['files']:,} empty files "
            f"(mini_batch_size {plan['mini_batch_size']}, run() returns the mini-batch's length): "
            f"{plan['parajob_mib']:.0f} MiB ({met}: < {PLAN_RSS_TARGET_MIB:.0f} MB), "
            f"{plan['parajob_s']:.2f} s; an os.scandir walk listing them in a fresh "
            f"process: {plan['listing_mib']:.0f} MiB, {plan['listing_s']:.2f} s."
        )
    rss = [
        f"{case['title']} {median(case['rss']['parajob']):.0f} MiB"
        for case in results["workloads"].values()
        if case["rss"].get("parajob")
    ]
    if rss:
        out.append("- parajob driver peak RSS (VmHWM, median): " + "; ".join(rss) + ".")
    for case in results["workloads"].values():
        if case.get("tuning"):
            tried = ", ".join(f"{c}: {s:.2f} s" for c, s in case["tuning"].items())
            out.append(
                f"- {case['title']}: Pool chunksize tried (1 run each) {tried}; the best, "
                f"{case['chunksize']}, is every peer's chunksize / units per task."
            )
    skipped = {
        r: why for case in results["workloads"].values() for r, why in case["skipped"].items()
    }
    for runner, why in skipped.items():
        out.append(f"- {NAMES[runner]} skipped: {why}.")
    return out


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, versions, parajob commit: for the JSON and RESULTS.md."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        ram_kib = int(f.readline().split()[1])
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    info = {
        "cores": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "ram": f"{ram_kib / 2**20:.1f} GiB",
        "python": platform.python_version(),
        "parajob commit": commit or "unknown",
    }
    for package in ("pandas", "pyarrow", "numpy", "Pillow", "joblib", "distributed", "ray"):
        info[package] = _version(package)
    return info


def markdown(results: dict[str, Any], note: str) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {m[k]}" for k in list(m)[4:])
    return "\n".join(
        [
            "# parajob vs peers (issue 13)",
            "",
            f"**{note}**",
            "",
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['ram']} RAM; 1-minute load "
            f"average {results['load'][0]:.1f} at the start, {results['load'][1]:.1f} at the "
            f"end. Scale {results['scale']} (1 = issue 13's sizes). Versions: {versions}.",
            "",
            "Run: `PYTHONPATH=$PWD/python python3 -m pytest bench/test_bench_peers.py "
            "-p no:cacheprovider -o faulthandler_timeout=0` (`PARAJOB_BENCH_SCALE=0.1` for a "
            "quick check; inputs are made once under $TMPDIR/parajob-bench-peers-*), then "
            "`cd bench && python3 -m peers.results --write RESULTS.md` writes this file from "
            "that run's JSON.",
            "",
            f"Whole-process wall time (Popen to exit, interpreter start and listing/reading "
            f"included), {results['workers']} worker processes everywhere, medians of "
            f"{results['rounds']} interleaved rounds; every runner's output lines checked "
            f"against serial's (same multiset). `c=` is the chunksize (units per message / "
            f"task), tuned on the Pool and used by every peer.",
            "",
            *table(results),
            "",
            *extras(results),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m peers.results")
    parser.add_argument("--json", type=Path, default=LAST_JSON)
    parser.add_argument("--write", type=Path, help="write the markdown here (else print it)")
    parser.add_argument(
        "--note",
        default="Measured on a quiet machine.",
        help="the line under the title (how the machine was loaded)",
    )
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text(encoding="utf-8"))
    text = markdown(results, args.note)
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
