"""Long work keeps the JupyterLab server alive; the idle culler stops it once the work ends.

JupyterHub's idle culler knows only what the single-user server reports as its
last activity: browser and kernel traffic. A ``run-notebook`` batch started in a
terminal, a kernel busy with a long cell whose tab was closed, or a
jupyter-scheduler job make none, so the culler would stop the server, and the
work with it.

This Jupyter server extension (enabled in the notebook image) looks every
``LongWorkMonitor.interval`` seconds for long work:

- a kernel of this server whose execution state is ``busy``;
- a ``run-notebook`` batch still running (each batch leaves a heartbeat file
  while it runs, :mod:`testbed.activity.batches`);
- a jupyter-scheduler job in progress (:mod:`testbed.activity.scheduler`), when
  the scheduler is loaded.

While there is some, it records the time as activity (``last_activity_times``
in the server's settings, which jupyter_server's
``ServerWebApplication.last_activity()`` counts), and the server reports itself
active to the hub every ``JUPYTERHUB_ACTIVITY_INTERVAL`` seconds. Once the work
has ended nothing more is recorded, and the culler stops the server after its
timeout. ``GET <base_url>/testbed/activity`` says what the extension found.

Nothing here imports jupyter_server except :mod:`testbed.activity.extension`,
which only the server loads.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "testbed.activity"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from testbed.activity.extension import load

    load(serverapp)
