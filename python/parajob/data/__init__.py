"""Inputs to mini-batch plans: file lists now, tables (MLTable) later."""

from parajob.data.files import FileBatchPlan, plan_file_batches

__all__ = ["FileBatchPlan", "plan_file_batches"]
