"""Bots that run notebooks against a live platform (like Rubin's mobu), and the benchmark.

A bot is a hub user (``bot-notebooks-<n>``, group ``users``) made through the hub's REST API
with an admin token. It runs every notebook in ``notebooks/`` (templates with their default
parameters) in one of two ways:

- ``via="lab"`` (the default of ``sciplat check notebooks``): the bot spawns its lab and runs
  each notebook cell by cell in a new kernel of that lab, over the Jupyter server's REST API and
  kernel websocket (:mod:`.labrun`), as Rubin's mobu does; the kernel has everything a user's
  kernel has (their Unix account, token, discovery document, portal channel, gateway);
- ``via="service"``: through the notebooks execution service's API (noteburst-style), each run
  executed fresh as the bot.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from sciplat.hub.bench import percentile

__all__ = ["BotClient", "NotebookReport", "collect_notebooks", "percentile", "prepare", "run_all"]

ACTIVE = ("queued", "running")
#: Answers of a proxy whose service is (re)starting: the bot waits and asks again.
RETRY_STATUS = (502, 503, 504)
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S | re.I)


def short_error(response: httpx.Response, limit: int = 500) -> str:
    """The gist of an error answer: a JSON ``detail``/``message``, an HTML page's heading, or
    the start of the text."""
    text = response.text
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if body.get(key):
                return str(body[key])[:limit]
    if match := _H1.search(text):
        return " ".join(match.group(1).split())[:limit]
    return " ".join(text.split())[:limit]


@dataclass
class NotebookReport:
    """What one bot saw running one notebook."""

    bot: str
    notebook: str
    status: str
    seconds: float
    kernel_seconds: float | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    job_id: str = ""
    job_url: str = ""
    via: str = "service"
    kernel: str = ""
    #: In a lab: who the kernel ran as (``hub_user``, ``unix_user``).
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class BotClient:
    """One bot user: hub account, token, optional lab, and calls to the notebooks API."""

    def __init__(
        self,
        hub_url: str,
        admin_token: str,
        name: str,
        group: str = "users",
        *,
        retry_seconds: float = 60,
        lab_options: dict[str, Any] | None = None,
    ) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.name = name
        self.retry_seconds = retry_seconds
        #: The spawn form's choices for the bot's lab (``{"size": "medium"}``); none: defaults.
        self.lab_options = lab_options or {}
        self._admin = httpx.Client(
            base_url=f"{self.hub_url}/hub/api", timeout=60,
            headers={"Authorization": f"token {admin_token}"},
        )  # fmt: skip
        self._ensure_user(group)
        response = self._admin.post(
            f"/users/{name}/tokens", json={"note": "notebook bot", "expires_in": 86400}
        )
        response.raise_for_status()
        self.token = response.json()["token"]
        self.api = httpx.Client(
            base_url=f"{self.hub_url}/services/api/notebooks", timeout=120,
            headers={"Authorization": f"Bearer {self.token}"},
        )  # fmt: skip

    def _ensure_user(self, group: str) -> None:
        if self._admin.get(f"/users/{self.name}").status_code == 404:
            self._admin.post(f"/users/{self.name}").raise_for_status()
        response = self._admin.post(f"/groups/{group}/users", json={"users": [self.name]})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"could not add {self.name} to group {group!r}: {response.text}")

    def spawn_lab(self, timeout: float = 300) -> float:
        """Start the bot's lab and wait until the hub says it is ready; returns seconds."""
        started = time.monotonic()
        response = self._admin.post(f"/users/{self.name}/server", json=self.lab_options)
        if response.status_code not in (201, 202, 400):  # 400: already running
            raise RuntimeError(f"spawn of {self.name} refused: {response.text}")
        while time.monotonic() - started < timeout:
            model = self._admin.get(f"/users/{self.name}").json()
            server = (model.get("servers") or {}).get("", {})
            if server.get("ready"):
                return time.monotonic() - started
            if not model.get("pending") and not server:
                raise RuntimeError(f"the lab of {self.name} stopped while starting")
            time.sleep(1)
        raise TimeoutError(f"the lab of {self.name} was not ready after {timeout:g} s")

    def stop_lab(self, timeout: float = 60) -> None:
        """Stop the bot's lab and wait until the hub has it stopped."""
        self._admin.delete(f"/users/{self.name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self._admin.get(f"/users/{self.name}").json()
            if not model.get("servers") and not model.get("pending"):
                return
            time.sleep(0.5)

    @property
    def lab_url(self) -> str:
        """The bot's (default) lab, a Jupyter server behind the hub's proxy."""
        return f"{self.hub_url}/user/{self.name}"

    def lab_status(self) -> int:
        """HTTP status of the running lab's ``api/status`` as the bot (200: it serves)."""
        response = httpx.get(
            f"{self.hub_url}/user/{self.name}/api/status", timeout=30, follow_redirects=False,
            headers={"Authorization": f"token {self.token}"},
        )  # fmt: skip
        return response.status_code

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One notebooks-API call; a service that is (re)starting behind the proxy (502/503/504,
        refused connection) is asked again for up to ``retry_seconds``."""
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                response = self.api.request(method, url, **kwargs)
                if response.status_code not in RETRY_STATUS:
                    return response
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            else:
                if time.monotonic() > deadline:
                    return response
            time.sleep(1)

    def submit(self, notebook: Path, root: Path, *, fresh: bool = True) -> dict[str, Any]:
        sidecar = notebook.with_suffix(".yaml")
        rel = notebook.relative_to(root)
        if sidecar.is_file():
            name = f"{rel.parent.name}/{notebook.stem}"
            response = self._call("POST", f"/templates/{name}/runs", json={"fresh": fresh})
        else:
            body = {"ipynb": json.loads(notebook.read_text()), "title": str(rel), "fresh": fresh}
            response = self._call("POST", "/jobs", json=body)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{rel}: refused ({response.status_code}): {short_error(response)}")
        return response.json()

    def wait(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while job["status"] in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.5)
            response = self._call("GET", f"/jobs/{job['id']}")
            if response.status_code != 200:
                raise RuntimeError(f"run {job['id']}: {short_error(response)}")
            job = response.json()
        return job

    def run(
        self, notebook: Path, root: Path, timeout: float = 1800, *, via: str = "service"
    ) -> NotebookReport:
        """Run *notebook* fresh as the bot, in its lab's kernel or through the service."""
        started = time.monotonic()
        try:
            if via == "lab":
                return self._run_in_lab(notebook, root, timeout, started)
            job = self.wait(self.submit(notebook, root), timeout)
        except Exception as exc:
            return NotebookReport(
                self.name,
                str(notebook.relative_to(root)),
                "refused",
                time.monotonic() - started,
                error={"index": None, "ename": type(exc).__name__, "evalue": str(exc)},
                via=via,
            )
        return NotebookReport(
            bot=self.name,
            notebook=str(notebook.relative_to(root)),
            status=job["status"],
            seconds=time.monotonic() - started,
            kernel_seconds=job.get("kernel_seconds"),
            cells=job.get("cell_timings", []),
            error=job.get("error"),
            job_id=job.get("id", ""),
            job_url=job.get("page_url", ""),
        )

    def _run_in_lab(
        self, notebook: Path, root: Path, timeout: float, started: float
    ) -> NotebookReport:
        from sciplat.services.notebooks.labrun import run_in_server

        run = run_in_server(self.lab_url, self.token, prepare(notebook), timeout=timeout)
        return NotebookReport(
            bot=self.name,
            notebook=str(notebook.relative_to(root)),
            status=run.status,
            seconds=time.monotonic() - started,
            kernel_seconds=run.kernel_seconds,
            cells=run.cells,
            error=run.error,
            via="lab",
            kernel=run.kernel,
            identity=run.identity,
        )

    def close(self) -> None:
        self.api.close()
        self._admin.close()


def prepare(notebook: Path) -> dict[str, Any]:
    """What a bot executes: a template (a notebook with a sidecar) with its default parameters
    injected, any other notebook as it is. A broken template raises ``RuntimeError``."""
    if not notebook.with_suffix(".yaml").is_file():
        return json.loads(notebook.read_text())
    from sciplat.services.notebooks.catalog import TemplateCatalog
    from sciplat.services.notebooks.params import inject_parameters, validate_parameters

    name = f"{notebook.parent.name}/{notebook.stem}"
    template = TemplateCatalog([notebook.parent]).get(name)
    if template is None or not template.ok:
        raise RuntimeError(f"template {name} is broken: {template.error if template else '?'}")
    return inject_parameters(template.notebook(), validate_parameters(template.parameters, {}))


def collect_notebooks(root: Path) -> list[Path]:
    """Every notebook under *root* (tutorials, commissioning, templates), sorted."""
    return sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _declared_timeout(notebook: Path) -> float:
    """The ``timeout`` a template's sidecar declares (0 without one): how long its author
    expects it may run."""
    sidecar = notebook.with_suffix(".yaml")
    try:
        value = yaml.safe_load(sidecar.read_text()).get("timeout", 0)
        return float(value)
    except (OSError, AttributeError, TypeError, ValueError, yaml.YAMLError):
        return 0.0


def run_all(
    bots: list[BotClient],
    notebooks: list[Path],
    root: Path,
    *,
    jobs: int = 1,
    timeout: float = 1800,
    via: str = "service",
    progress: Callable[[NotebookReport], None] | None = None,
) -> list[NotebookReport]:
    """Each bot runs every notebook (bots in parallel; each bot *jobs* notebooks at once, the
    longest first by their sidecar's timeout) *via* its lab or the service. Reports come back
    in (bot, notebook) order."""
    order = sorted(range(len(notebooks)), key=lambda i: -_declared_timeout(notebooks[i]))

    def one_bot(bot: BotClient) -> list[NotebookReport]:
        def one(index: int) -> tuple[int, NotebookReport]:
            report = bot.run(notebooks[index], root, timeout, via=via)
            if progress:
                progress(report)
            return index, report

        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            return [report for _, report in sorted(pool.map(one, order), key=lambda r: r[0])]

    with ThreadPoolExecutor(max_workers=max(len(bots), 1)) as pool:
        return [r for reports in pool.map(one_bot, bots) for r in reports]
