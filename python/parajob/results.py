"""What a run gives back to a Python caller: RunResult, one StepResult per step.

    runner.run_pipeline -> [Outcome | CommandOutcome | NotRun]  (runtime, one per step)
                                     |  StepResult.from_outcome
                                     v
                            RunResult(run_dir, steps)  --to_dict()--> job_result.json

The runtime's outcome types stay the runtime's; these are the public, stable shapes:
plain data, no reference to a live run, equal when their content is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parajob.executors.base import NodeHost
from parajob.runtime.isolation import Quarantined
from parajob.runtime.report import Failure, iso_times

__all__ = ["Failure", "NodeHost", "Quarantined", "RunResult", "StepResult", "STATUSES"]

# How a step or a run ended. "not_run": a step a failed producer (or a missing input) kept
# from starting. A run's status is its worst step's, in this order of precedence.
STATUSES = ("cancelled", "interrupted", "failed", "not_run", "succeeded")


@dataclass(frozen=True)
class StepResult:
    """How one step ended. Counts are those of its job_result.txt (zero for a command
    step, which has no mini-batches)."""

    name: str
    kind: str  # "parallel", "command" or "not_run"
    status: str  # one of STATUSES
    reason: str
    total_batches: int = 0
    completed_batches: int = 0
    failed_batches: int = 0
    items_in: int = 0
    items_out: int = 0
    failed_items: int = 0
    failed_attempts: int = 0
    seconds: float = 0.0
    output: Path | None = None  # the append_row file of a parallel step
    outputs: Mapping[str, Path] = field(default_factory=dict)  # a command step's outputs
    logs: Path | None = None
    failures: tuple[Failure, ...] = ()  # mini-batches failed for good (first 1000)
    hosts: tuple[NodeHost, ...] = ()  # where each node of a parallel step ran
    settings: Mapping[str, Any] = field(default_factory=dict)  # a parallel step's, resolved
    started_at: str = ""  # UTC ISO-8601 with ms ("" when not known)
    ended_at: str = ""
    first_failure: str = ""  # job_result.txt's "first failure" block ("": none):
    # a mini-batch's, init()'s or a crashed worker's
    # --isolate_failures: the items that failed alone, as logs/quarantine.csv lists them
    quarantined: tuple[Quarantined, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_outcome(cls, outcome: Any) -> StepResult:
        """From a runtime outcome (runtime.report.Outcome, runtime.command_step.
        CommandOutcome, runner.NotRun)."""
        from parajob.runtime.command_step import CommandOutcome
        from parajob.runtime.report import Outcome

        if not isinstance(outcome, (Outcome, CommandOutcome)):  # runner.NotRun
            return cls(outcome.step, "not_run", "not_run", outcome.reason)
        status = outcome.status.lower()  # runtime.report.step_status: one rule for both
        if isinstance(outcome, Outcome):
            t = outcome.tally
            started, ended = "", ""
            if outcome.started_at > 0:
                start_ns = int(outcome.started_at * 1e9)
                started, ended = iso_times(
                    np.array([start_ns, start_ns + int(outcome.seconds * 1e9)])
                )
            return cls(
                outcome.step,
                "parallel",
                status,
                outcome.reason,
                t.total_batches,
                t.done_batches,
                t.failed_batches,
                t.items_in,
                t.items_out,
                t.failed_items,
                t.failed_attempts,
                outcome.seconds,
                outcome.output,
                {},
                outcome.logs,
                tuple(outcome.failures),
                tuple(outcome.hosts),
                dict(outcome.settings),
                started,
                ended,
                (outcome.first_failure or "").rstrip(),
                tuple(outcome.quarantined),
            )
        return cls(
            outcome.step,
            "command",
            status,
            outcome.reason,
            seconds=outcome.seconds,
            outputs=dict(outcome.outputs),
            logs=outcome.log.parent.parent,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, failures as dicts."""
        data = asdict(self)
        data["succeeded"] = self.succeeded
        for key in ("output", "logs"):
            data[key] = str(data[key]) if data[key] is not None else None
        data["outputs"] = {k: str(v) for k, v in self.outputs.items()}
        data["failures"] = [asdict(f) for f in self.failures]
        data["hosts"] = [h.to_dict() for h in self.hosts]
        data["quarantined"] = [asdict(q) for q in self.quarantined]
        data["quarantined_items"] = len(self.quarantined)
        data["settings"] = dict(self.settings)
        return data


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its folder, and its steps in the order they were tried."""

    run_dir: Path
    steps: tuple[StepResult, ...]
    seconds: float = 0.0

    @classmethod
    def from_outcomes(
        cls, run_dir: Path, outcomes: Iterable[Any], seconds: float = 0.0
    ) -> RunResult:
        return cls(run_dir, tuple(StepResult.from_outcome(o) for o in outcomes), seconds)

    @property
    def status(self) -> str:
        """The worst of the steps' statuses ("failed" for a run that tried no step)."""
        if not self.steps:
            return "failed"
        return min((s.status for s in self.steps), key=STATUSES.index)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def reason(self) -> str:
        """The first step's reason that is not a success, else the last step's."""
        for step in self.steps:
            if not step.succeeded:
                return f"{step.name}: {step.reason}"
        return self.steps[-1].reason if self.steps else "no step ran"

    def step(self, name: str) -> StepResult:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(
            f"no step {name!r} in this run (steps: "
            f"{', '.join(s.name for s in self.steps) or 'none'})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "status": self.status,
            "succeeded": self.succeeded,
            "reason": self.reason,
            "seconds": self.seconds,
            "steps": [s.to_dict() for s in self.steps],
        }
