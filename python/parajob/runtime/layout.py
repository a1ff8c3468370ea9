"""Where a step's files live under the run folder (SPEC §6)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

README = """\
parajob logs of step {step}

job_result.txt          status, reason, counts; the first failing mini-batch and its traceback
job_error.txt           the errors of failed mini-batches (one block per failed attempt)
job_progress_overview.<timestamp>.txt
                        progress lines: scheduled / processed mini-batches over time
user/stdout/<node>/processNNN.stdout.txt    what each worker process printed
user/stderr/<node>/processNNN.stderr.txt    its standard error (crash dumps included)
user/error/<node>/processNNN.txt            tracebacks of failed run()/init() calls
user/entry_script_log/<node>/processNNN.log.txt
                        lines logged through EntryScript().logger
sys/job_report/processed_mini-batches.csv   one row per attempt: index, attempt, node,
                        process, items in/out, seconds, status, error, start/end
                        time (UTC), pid, node index, host
sys/spool/              per-process result spools (internal; merged into the output)
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
    def processed_csv(self) -> Path:
        return self.logs / "sys" / "job_report" / "processed_mini-batches.csv"

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
        for folder in (self.logs, self.spool_dir, self.work_dir, self.outputs_dir,
                       self.processed_csv.parent):
            folder.mkdir(parents=True, exist_ok=True)
        for kind in ("stdout", "stderr", "error", "entry_script_log"):
            (self.logs / "user" / kind).mkdir(parents=True, exist_ok=True)
        (self.logs / "readme.txt").write_text(README.format(step=self.root.name), encoding="utf-8")


def node_name(node: int) -> str:
    return f"node{node:03d}"


def process_name(local_rank: int) -> str:
    """Azure's agent names: process001, process002, ... per node."""
    return f"process{local_rank + 1:03d}"
