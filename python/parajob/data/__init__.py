"""Inputs to mini-batch plans: file lists, tables (MLTable), partitions.

``plan_input`` is the entry point: it picks the plan for the step's input (plans.py).
Table support (pyarrow, pandas) is imported only when a table is planned, so that the
driver of a file-list job, and the workers it forks, never pay for those imports.
"""

from typing import Any

from parajob.data.files import FileBatchPlan, InputDataError, plan_file_batches
from parajob.data.input_errors import TableInputError, Where
from parajob.data.plans import plan_input

__all__ = [
    "FileBatchPlan",
    "InputDataError",
    "TableBatchPlan",
    "TableInputError",
    "Where",
    "plan_file_batches",
    "plan_input",
]


def __getattr__(name: str) -> Any:
    if name == "TableBatchPlan":
        from parajob.data.tables import TableBatchPlan

        return TableBatchPlan
    raise AttributeError(f"module 'parajob.data' has no attribute {name!r}")
