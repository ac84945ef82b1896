"""The server side: the periodic check and ``GET <base_url>/testbed/activity``.

Loaded by jupyter_server (``_load_jupyter_server_extension`` in
:mod:`testbed.activity`); the image enables it with
``jupyter server extension enable --sys-prefix testbed.activity``.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback

from testbed.activity.monitor import LongWorkMonitor

SETTINGS_KEY = "testbed_activity_monitor"
ROUTE = "testbed/activity"


class ActivityHandler(APIHandler):
    """What long work keeps the server active, as JSON; any user of this server may ask.

    ``{"active": true, "reasons": ["1 busy kernel"], "busy_kernels": 1, "batches": [...],
    "scheduler_jobs": [...], "recorded": ISO, "last_activity": ISO, "checked": ISO,
    "interval_s": 30.0}``; ``last_activity`` is what the server reports to the hub.
    """

    auth_resource = "api"
    # Asking is not activity: a script that polls this must not keep the server alive.
    _track_activity = False

    @web.authenticated
    @authorized
    def get(self) -> None:
        monitor: LongWorkMonitor = self.settings[SETTINGS_KEY]
        work = monitor.tick()
        last = getattr(self.application, "last_activity", None)
        self.finish(json.dumps(monitor.report(work, last() if callable(last) else None)))


def load(serverapp: Any) -> None:
    web_app = serverapp.web_app
    monitor = LongWorkMonitor(web_app.settings, parent=serverapp, log=serverapp.log)
    web_app.settings[SETTINGS_KEY] = monitor
    route = url_path_join(web_app.settings["base_url"], ROUTE)
    web_app.add_handlers(".*$", [(route, ActivityHandler)])
    callback = PeriodicCallback(monitor.tick, monitor.interval * 1000)
    callback.start()
    monitor.callback = callback
    serverapp.log.info(
        "testbed.activity: busy kernels, run-notebook batches (%s) and jupyter-scheduler jobs "
        "keep this server active; checked every %g s",
        monitor.batches_dir,
        monitor.interval,
    )
