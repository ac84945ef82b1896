"""jupyter-scheduler jobs whose parameters mean what they mean to ``run-notebook -p``.

jupyter-scheduler (2.x) runs each job in a process of its own through the class named
by ``BaseScheduler.execution_manager_class`` (default
``jupyter_scheduler.executors.DefaultExecutionManager``). That class writes the job's
parameters into the notebook as raw source (``jupyter_scheduler.parameterize
.add_parameters`` makes ``experiment = exp-005`` of the value ``exp-005``: a
SyntaxError), and stores ``str()`` of a failing cell's error, the kernel's ANSI colour
codes included, as the job's status message (``ExecutionManager.on_failure``).

:class:`TestbedExecutionManager` is that class with three changes:

- a parameter's value is read as ``run-notebook -p`` reads it
  (:func:`testbed.batch.runner.parse_value`: ``exp-005`` the string, ``40`` an int,
  ``[1, 2]`` a list) and written by papermill's own injection
  (``papermill.parameterize.parameterize_notebook``), as ``run-notebook`` does: a cell
  tagged ``injected-parameters`` after the cell tagged ``parameters``. A name the
  parameters cell does not assign, or a notebook without such a cell, fails the job
  before it runs, with what the notebook does define (``run-notebook`` refuses both too);
- a failing job's status message is plain text, the error first;
- when a job ends, completed or failed, its files are copied from the staging folder to
  the folder the Jobs panel's download button copies them to
  (``<root>/<BaseScheduler.output_directory>/<notebook>-<job id>/``), with the names the
  panel links to, so they are in the file browser without a click. The execution manager
  is built without the server's configuration, so it reads that folder from
  ``TESTBED_SCHEDULER_OUTPUT_DIR`` (the notebook image sets it from the same value as
  ``output_directory``); unset, jupyter-scheduler's default (``jobs``).

Configured in the server's configuration (roles/notebook_image)::

    {"BaseScheduler": {"execution_manager_class": "testbed.scheduler.TestbedExecutionManager"}}

Needs jupyter-scheduler, which the image installs only with the scheduler enabled.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from jupyter_scheduler.executors import DefaultExecutionManager
from jupyter_scheduler.job_files_manager import Downloader
from jupyter_scheduler.scheduler import BaseScheduler
from jupyter_scheduler.utils import create_output_directory
from nbconvert.filters.ansi import strip_ansi
from nbconvert.preprocessors import ExecutePreprocessor
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from papermill.utils import find_first_tagged_cell_index

from testbed.batch.notebook import PARAMETERS_TAG, NotebookError, inspect_notebook
from testbed.batch.runner import parse_value, unknown_parameter
from testbed.errors import TestbedError

log = logging.getLogger(__name__)

#: The folder (relative to the server's root) a job's files are delivered to.
OUTPUT_DIR_ENV = "TESTBED_SCHEDULER_OUTPUT_DIR"
#: jupyter-scheduler's ``jobs.status_message`` column is a String(1024).
STATUS_MESSAGE_LIMIT = 1024


class JobParameterError(TestbedError):
    """The job's parameters do not fit its notebook; nothing was run."""


class JobFailed(Exception):
    """What ``ExecutionManager.on_failure`` stores as the job's status message."""


def parse_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The scheduler's parameters (text, as typed in the Create Job form) as values:
    each read as ``run-notebook -p NAME VALUE`` reads VALUE."""
    return {
        name: parse_value(value) if isinstance(value, str) else value
        for name, value in parameters.items()
    }


def _language(nb: nbformat.NotebookNode) -> str | None:
    meta = nb.get("metadata") or {}
    kernelspec = meta.get("kernelspec") or {}
    language_info = meta.get("language_info") or {}
    return kernelspec.get("language") or language_info.get("name")


def check_parameters(nb: nbformat.NotebookNode, names: list[str], path: str | Path) -> None:
    """Raise :class:`JobParameterError` unless the notebook at ``path`` (whose content is
    ``nb``, as papermill's reader returns it) has a cell tagged ``parameters`` that
    assigns every name in ``names``.

    The names are read as ``run-notebook`` reads them (``testbed.batch.notebook``), in
    Python notebooks; in other languages only the tagged cell is required.
    """
    path = Path(path)
    if find_first_tagged_cell_index(nb, PARAMETERS_TAG) < 0:
        raise JobParameterError(
            f"{path.name} has no cell tagged '{PARAMETERS_TAG}', so the job's parameters "
            f"({', '.join(names)}) have nowhere to go. In JupyterLab select the cell that "
            'sets their defaults (e.g. experiment = "exp-001"), open the property inspector '
            f"(gear icon, right sidebar), add the tag '{PARAMETERS_TAG}', save, and create "
            "the job again."
        )
    if _language(nb) not in (None, "python"):
        return
    try:
        defined = list(inspect_notebook(path).parameters)
    except NotebookError as exc:
        raise JobParameterError(str(exc)) from None
    problems = [unknown_parameter(n, defined, path.name) for n in names if n not in defined]
    if problems:
        raise JobParameterError("; ".join(problems))


def inject_parameters(path: str | Path, parameters: Mapping[str, Any]) -> nbformat.NotebookNode:
    """The notebook at ``path`` with ``parameters`` injected as ``run-notebook`` injects
    them: read by papermill's reader, the values by :func:`parse_parameters`, written by
    papermill's ``parameterize_notebook``.

    Raises :class:`JobParameterError` when they do not fit the notebook
    (:func:`check_parameters`).
    """
    nb = load_notebook_node(str(path))
    values = parse_parameters(parameters)
    check_parameters(nb, list(values), path)
    return parameterize_notebook(nb, values)


def failure_message(exc: BaseException, limit: int = STATUS_MESSAGE_LIMIT) -> str:
    """A job's error as plain text: the error of the notebook's code first
    (``NameError: name 'x' is not defined``), then nbclient's text (the cell and its
    traceback) without colour codes; at most ``limit`` characters."""
    text = strip_ansi(str(exc)).strip()
    ename = getattr(exc, "ename", None)
    if ename:  # nbclient's CellExecutionError: an error of the notebook's own code
        head = f"{ename}: {strip_ansi(str(getattr(exc, 'evalue', '')))}".strip()
        text = f"{head}\n\n{text}" if text else head
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def output_directory() -> str:
    """Where a job's files go, relative to the server's root (see the module doc)."""
    return os.environ.get(OUTPUT_DIR_ENV) or BaseScheduler.output_directory.default_value


class TestbedExecutionManager(DefaultExecutionManager):
    """jupyter-scheduler's default execution manager, with parameters read as
    ``run-notebook -p`` reads them, a plain-text error, and the job's files delivered
    to the visible output folder when it ends (see the module doc)."""

    __test__ = False  # not a pytest test class despite the name

    def execute(self):
        # DefaultExecutionManager.execute, with inject_parameters for add_parameters
        job = self.model
        if job.parameters:
            nb = inject_parameters(self.staging_paths["input"], job.parameters)
        else:
            with open(self.staging_paths["input"], encoding="utf-8") as f:
                nb = nbformat.read(f, as_version=4)
        staging_dir = os.path.dirname(self.staging_paths["input"])
        ep = ExecutePreprocessor(
            kernel_name=nb.metadata.kernelspec["name"], store_widget_state=True, cwd=staging_dir
        )
        try:
            ep.preprocess(nb, {"metadata": {"path": staging_dir}})
        finally:
            try:
                self.add_side_effects_files(staging_dir)
                self.create_output_files(job, nb)
            finally:
                self.deliver_files()

    def on_failure(self, e: Exception):
        super().on_failure(JobFailed(failure_message(e)))

    def deliver_files(self) -> None:
        """Copy the job's files where the Jobs panel's download button puts them, with
        jupyter-scheduler's own ``Downloader``; files already there are kept. Never
        raises: the files stay in the staging folder and the button still works."""
        try:
            self._model = None  # read the job again: its packaged files may have grown
            job = self.model
            target = os.path.join(
                self.root_dir,
                output_directory(),
                create_output_directory(job.input_filename, job.job_id),
            )
            names: dict[str, Any] = {
                fmt: os.path.basename(self.staging_paths[fmt]) for fmt in job.output_formats
            }
            names["input"] = job.input_filename
            with_files = bool(job.package_input_folder and job.packaged_files)
            if with_files:
                names["files"] = list(job.packaged_files)
            Downloader(
                output_formats=list(job.output_formats),
                output_filenames=names,
                staging_paths=self.staging_paths,
                output_dir=target,
                redownload=False,
                include_staging_files=with_files,
            ).download()
        except Exception:  # noqa: BLE001 - the job's outcome must not depend on the copy
            log.exception("job %s: could not copy its files out of the staging folder", self.job_id)
