"""The Create Job form of JupyterLab's Jobs panel, filled with the notebook's parameters.

jupyter-scheduler's form starts with no parameters: a researcher has to know the names
the notebook's ``parameters`` cell assigns and type each one. This package offers them:

- :func:`job_parameters` reads a notebook's cell tagged ``parameters`` (the cell
  papermill and ``run-notebook`` inject after) and gives each name it assigns with its
  default written as ``run-notebook -p NAME VALUE`` would take it (and as
  :class:`testbed.scheduler.TestbedExecutionManager` reads a job's parameters):
  ``experiment = "exp-001"`` is ``exp-001``, ``trials = 40`` is ``40``, ``label = "40"``
  is ``"40"`` (bare, it would be read as a number);
- the server extension (:mod:`testbed.job_parameters.extension`, enabled in the
  notebook image with the scheduler) answers ``GET <base_url>/testbed/job-parameters
  ?path=<notebook>`` with them;
- the JupyterLab extension ``@testbed/job-parameters`` (its built files ship in
  ``labextension/``; source in ``packages/testbed-notebook/labextension``) asks that
  route when the form opens on a notebook and fills the form's parameters with the
  answer, unless the researcher has already touched them.

A default that is not a literal (``start = datetime.now()``) cannot be written as text
that means the same: it is listed with ``value`` ``None`` and the form leaves it out,
so the notebook's own default stands.
"""

from __future__ import annotations

from typing import Any

from testbed.job_parameters.notebook import JobParameter, as_parameter_text, job_parameters

__all__ = ["JobParameter", "as_parameter_text", "job_parameters"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "testbed.job_parameters"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from testbed.job_parameters.extension import load

    load(serverapp)
