"""Tornado handlers of ``{base_url}sciplat-lab/...``: HTTP in and out only.

Each route translates the request into a call of the module that owns the job (status,
startup, tutorials, queries, portalsend, runs, hubexit, usage) and its answer or
:class:`~sciplat.labextension.errors.LabError` into the contract's JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from sciplat.labextension import (
    hubexit,
    portalsend,
    queries,
    runs,
    startup,
    status,
    tutorials,
    usage,
)
from sciplat.labextension.config import SciplatLab
from sciplat.labextension.errors import BadRequest, LabError
from sciplat.labextension.platform import PlatformClient

__all__ = ["LabContext", "setup_handlers"]

PREFIX = "sciplat-lab"


class LabContext:
    """What every handler needs: settings, the lab's root, its environment and platform."""

    def __init__(self, config: SciplatLab, root_dir: Path, env: dict[str, str]) -> None:
        self.config = config
        self.root_dir = Path(root_dir)
        self.env = env
        self.platform = PlatformClient(env, timeout=config.service_timeout)


class LabHandler(APIHandler):
    """JSON in and out; LabErrors become ``{"error", "message"}`` with their status."""

    @property
    def lab(self) -> LabContext:
        return self.settings["sciplat_lab"]

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise BadRequest(f"The request body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        return body

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, LabError):
            self.set_status(exc.status)
            body = exc.as_json()
        elif isinstance(exc, web.HTTPError):
            body = {"error": f"http-{status_code}", "message": exc.log_message or self._reason}
        else:
            body = {"error": "internal", "message": "The lab extension failed; see the lab log."}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, LabError):
            self.log.info("sciplat-lab %s: %s %s", self.request.path, value.status, value.code)
            return
        super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, LabError):
            if not self._finished:
                self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            self.log_exception(type(e), e, e.__traceback__)
            return
        super()._handle_request_exception(e)


class StatusHandler(LabHandler):
    @web.authenticated
    async def get(self) -> None:
        memory = status.cgroup_memory()
        self.reply(await asyncio.to_thread(status.lab_status, self.lab.env, memory))


class UsageHandler(LabHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await usage.workspace_usage(self.lab.platform))


class StartupHandler(LabHandler):
    @web.authenticated
    async def get(self) -> None:
        home = Path(self.lab.config.home)
        problems = await asyncio.to_thread(
            startup.startup_problems, home, self.lab.env, self.lab.config.disk_free_min_bytes
        )
        self.reply({"problems": problems})


class TutorialsHandler(LabHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await asyncio.to_thread(tutorials.list_tutorials))


class TutorialCopyHandler(LabHandler):
    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        result = await asyncio.to_thread(
            tutorials.copy_tutorial,
            self.lab.root_dir,
            body.get("path"),
            overwrite=bool(body.get("overwrite", False)),
        )
        self.reply(result)


class QueriesHandler(LabHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await queries.query_history(self.lab.platform))


class QueryNotebookHandler(LabHandler):
    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        path = await queries.write_query_notebook(
            self.lab.platform, self.lab.root_dir, body.get("job_id")
        )
        self.reply(path)


class PortalHandler(LabHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(portalsend.portal_url(self.lab.platform))


class PortalSendHandler(LabHandler):
    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        self.reply(
            await portalsend.send_to_portal(self.lab.platform, self.lab.root_dir, body.get("path"))
        )


class RunSchemaHandler(LabHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await runs.run_schema(self.lab.root_dir, self.get_query_argument("path", "")))


class RunHandler(LabHandler):
    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        answer = await runs.submit_run(
            self.lab.platform,
            self.lab.root_dir,
            body.get("path"),
            body.get("parameters"),
            self.base_url,
        )
        self.reply(answer)


class RunStatusHandler(LabHandler):
    @web.authenticated
    async def get(self, job_id: str) -> None:
        self.reply(await runs.job_status(self.lab.platform, job_id, self.base_url))


class RunHtmlHandler(LabHandler):
    def finish(self, chunk: Any = None) -> Any:
        # HTML: skip APIHandler.finish, which labels every answer application/json.
        return JupyterHandler.finish(self, chunk)

    @web.authenticated
    async def get(self, job_id: str) -> None:
        html = await runs.job_html(self.lab.platform, job_id)
        # Notebook output is untrusted: never let it run with the lab's origin and rights.
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "sandbox allow-scripts allow-popups")
        self.finish(html)


class ExitHandler(LabHandler):
    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        plan = await hubexit.exit_plan(self.lab.platform, bool(body.get("logout", False)))
        self.reply(plan)
        # Answer first; the hub's stop then ends this process.
        platform = self.lab.platform
        asyncio.get_running_loop().call_later(
            0.5, lambda: _STOPPING.add(asyncio.ensure_future(hubexit.stop_own_server(platform)))
        )


#: Keeps the stop task referenced while it runs.
_STOPPING: set[asyncio.Future] = set()


ROUTES: list[tuple[str, type[LabHandler]]] = [
    ("status", StatusHandler),
    ("usage", UsageHandler),
    ("startup-problems", StartupHandler),
    ("tutorials", TutorialsHandler),
    ("tutorials/copy", TutorialCopyHandler),
    ("queries", QueriesHandler),
    ("queries/notebook", QueryNotebookHandler),
    ("portal", PortalHandler),
    ("portal/send", PortalSendHandler),
    ("run/schema", RunSchemaHandler),
    ("run", RunHandler),
    (r"run/([^/]+)/html", RunHtmlHandler),
    (r"run/([^/]+)", RunStatusHandler),
    ("exit", ExitHandler),
]


def setup_handlers(web_app: Any, config: SciplatLab, root_dir: str) -> None:
    """Register the routes under ``{base_url}sciplat-lab/`` with a shared :class:`LabContext`."""
    web_app.settings["sciplat_lab"] = LabContext(config, Path(root_dir), dict(os.environ))
    base = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$", [(url_path_join(base, PREFIX, path) + "/?$", cls) for path, cls in ROUTES]
    )
