"""Run one notebook over many experiments with papermill (command ``run-notebook``)."""

from testbed.batch.notebook import NotebookInfo, inspect_notebook
from testbed.batch.runner import BatchError, BatchPlan, RunResult, plan_batch, run_batch

__all__ = [
    "BatchError",
    "BatchPlan",
    "NotebookInfo",
    "RunResult",
    "inspect_notebook",
    "plan_batch",
    "run_batch",
]
