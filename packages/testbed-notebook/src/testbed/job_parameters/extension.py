"""``GET <base_url>/testbed/job-parameters?path=<notebook>``: a notebook's parameters
for JupyterLab's Create Job form (:mod:`testbed.job_parameters`).

``path`` is the notebook's path as JupyterLab's contents API names it (relative to the
server's root). Answers ``{"path": ..., "parameters": [{"name": ..., "value": ...}],
"problem": null}``; a notebook without a cell tagged ``parameters``, or whose cell is
not valid Python, answers 200 with ``parameters`` ``[]`` and ``problem`` saying what to
do (the form then opens as it always did). 400: no ``path``, or not a notebook; 404: no
such file (the contents manager's own answer). The request needs the same permission as
reading the file through the contents API.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web

from testbed.batch.notebook import PARAMETERS_TAG
from testbed.job_parameters.notebook import job_parameters

ROUTE = "testbed/job-parameters"


class JobParametersHandler(APIHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.get_query_argument("path", "").strip("/")
        if not path:
            raise web.HTTPError(400, "give the notebook as ?path=<path in the file browser>")
        if not path.endswith(".ipynb"):
            raise web.HTTPError(400, f"{path} is not a notebook (.ipynb)")
        model = await ensure_async(self.contents_manager.get(path, content=True, type="notebook"))
        problem = None
        try:
            parameters = job_parameters(model["content"])
        except SyntaxError as exc:
            parameters = []
            problem = (
                f"the cell tagged '{PARAMETERS_TAG}' of {path} is not valid Python "
                f"(line {exc.lineno}: {exc.msg}); fix it and open the form again"
            )
        else:
            if not parameters:
                problem = (
                    f"{path} has no cell tagged '{PARAMETERS_TAG}' that assigns a name, so a "
                    "job has nowhere to put its parameters: tag the cell that sets the "
                    "defaults (property inspector, gear icon) and save"
                )
        self.finish(
            json.dumps(
                {"path": path, "parameters": [p.to_json() for p in parameters], "problem": problem}
            )
        )


def load(serverapp: Any) -> None:
    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], ROUTE)
    web_app.add_handlers(".*$", [(route, JobParametersHandler)])
    serverapp.log.info("testbed.job_parameters: %s fills the Create Job form", route)
