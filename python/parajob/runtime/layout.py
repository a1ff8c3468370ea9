"""Where a step's files live under the run folder (docs/contract.md §6.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUARANTINE_CSV = "quarantine.csv"  # in logs/, with --isolate_failures (runtime/isolation.py)

README = """\
parajob logs of step {step}

This folder is <run>/{step}/logs/. Paths below are relative to it; ../ is <run>/{step}/.

job_result.txt          status, reason, counts; the first failure (a mini-batch's inputs,
                        attempt and traceback, or init()'s traceback, or a crashed worker's
                        faulthandler trace)
job_result.json         the same as data: settings, counts, timings, failures
job_error.txt           one block per failed attempt (and per failed init()): its traceback
job_progress_overview.<timestamp>.txt
                        one progress line every 5 s: counts, rate, ETA, latest failure
environment.txt         the compute and environment the YAML asked for, and the Python
                        that actually ran the step
readme.txt              this file
user/stdout/<node>/processNNN.stdout.txt    what each worker process printed
user/stderr/<node>/processNNN.stderr.txt    its standard error (faulthandler crash traces)
user/error/<node>/processNNN.txt            tracebacks of failed run()/init() calls
user/entry_script_log/<node>/processNNN.log.txt
                        lines logged through EntryScript().logger
sys/job_report/processed_mini-batches.csv   one row per attempt: index, attempt, node,
                        process, items in/out, seconds, status, error, start/end
                        time (UTC), pid, node index, host
sys/job_report/settings.json        the step's resolved settings (limits, workers, totals)
sys/job_report/workers.csv          one row per worker process: process, node, name, slot,
                        start time
sys/job_report/attempts_timeline.bin
                        when each attempt ran (binary; `parajob show` reads it)
sys/perf/<node>/machine.csv, processes.csv, gpu.csv
                        resource samples every --resource_monitor_interval seconds
                        (0: none; gpu.csv only with a GPU and nvidia-ml-py); columns in
                        the README's "Resource monitor"

Only when asked for:
  sys/profile/<node>/processNNN.<id>.prof and .txt
                        --profiling_module cProfile: each worker's run() profile (pstats)
                        and its top 20 functions
  quarantine.csv        --isolate_failures N: the items that failed alone (step,
                        mini_batch, item_index, item, status, error, log_file);
                        `parajob run --skip-items` reads it back
  sys/nodes.txt         --compute NAME=ADDRESS (a Dask cluster): the host of each node
  <run>/logs/{step}/
                        --copy_logs_to_parent True: job_result.txt, job_result.json and the
                        progress overview, copied there when the step ends
  <run>/parajob-report.html
                        `parajob show --html <run>`: the run's report, one HTML file

Beside this folder (internal, read by parajob; do not edit):
../outputs/             the step's outputs (append_row_to's file)
../sys/journal.bin      the accepted mini-batches (what --resume keeps)
../sys/spool/           per-process result spools (merged into the output)
../sys/work/<node>/processNNN/   each worker's working folder
"""


@dataclass(frozen=True)
class StepLayout:
    root: Path  # <run>/<step>

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def spool_dir(self) -> Path:
        return self.root / "sys" / "spool"

    @property
    def work_dir(self) -> Path:
        return self.root / "sys" / "work"

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def job_result(self) -> Path:
        return self.logs / "job_result.txt"

    @property
    def job_error(self) -> Path:
        return self.logs / "job_error.txt"

    @property
    def quarantine_csv(self) -> Path:
        return self.logs / QUARANTINE_CSV

    @property
    def processed_csv(self) -> Path:
        return self.logs / "sys" / "job_report" / "processed_mini-batches.csv"

    def script_check(self, process: int) -> Path:
        """Why worker ``process`` rejected the entry script (runtime/worker.py), as JSON."""
        return self.root / "sys" / f"script_check.{process}.json"

    def user_log(self, kind: str, node: str, process_name: str) -> Path:
        suffix = {
            "stdout": ".stdout.txt",
            "stderr": ".stderr.txt",
            "error": ".txt",
            "entry_script_log": ".log.txt",
        }[kind]
        return self.logs / "user" / kind / node / f"{process_name}{suffix}"

    def create(self) -> None:
        """Make the folders; called by the driver before forking (workers only open files)."""
        for folder in (
            self.logs,
            self.spool_dir,
            self.work_dir,
            self.outputs_dir,
            self.processed_csv.parent,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        for kind in ("stdout", "stderr", "error", "entry_script_log"):
            (self.logs / "user" / kind).mkdir(parents=True, exist_ok=True)
        (self.logs / "readme.txt").write_text(README.format(step=self.root.name), encoding="utf-8")


def node_name(node: int) -> str:
    return f"node{node:03d}"


def process_name(local_rank: int) -> str:
    """Azure's agent names: process001, process002, ... per node."""
    return f"process{local_rank + 1:03d}"
