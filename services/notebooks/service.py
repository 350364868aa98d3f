"""Notebook runs: validation, result cache, per-user limits, background execution, history.

Handlers call :class:`NotebookService`; it uses the :class:`~.catalog.TemplateCatalog`, the
:class:`~.store.JobStore` and the :class:`~.engine.Executor`. A run's owner is the user whose
token submitted it; other users see it only if the owner shares it (its link is then readable by
anyone holding ``custom:notebooks:exec``). The cache is per owner, because a run executes with
its owner's data rights: the same (notebook content hash, parameters, image) submitted again by
the same user returns the earlier successful run without executing anything.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciplat.config import QuotaConfig, Settings
from sciplat.services.common.auth import AuthenticatedUser
from sciplat.services.common.errors import (
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ServiceError,
    UsageError,
)
from sciplat.services.notebooks.catalog import Template, TemplateCatalog, read_notebook
from sciplat.services.notebooks.engine import ExecutionResult, Executor
from sciplat.services.notebooks.params import (
    ParameterError,
    clear_outputs,
    inject_parameters,
    params_digest,
    validate_parameters,
)
from sciplat.services.notebooks.render import render_html
from sciplat.services.notebooks.store import Job, JobStore

__all__ = ["BrokenTemplateError", "NotebookService"]

log = logging.getLogger("sciplat.services.notebooks")


class BrokenTemplateError(ServiceError):
    """The template exists but its sidecar or notebook is unusable (HTTP 409)."""

    status_code = 409
    error_code = "BrokenTemplate"


@dataclass(frozen=True)
class RunRequest:
    """What a run executes and how it is filed: the parts of its cache key (content hash,
    parameter values) and its history fields."""

    notebook: dict[str, Any]
    content_hash: str
    kind: str  # template or notebook
    title: str
    timeout: int
    values: dict[str, Any] = field(default_factory=dict)
    template: str | None = None


def notebook_hash(notebook: dict[str, Any]) -> str:
    """Hash of what executes: the cells' types and sources and the kernel."""
    cells = [(c.get("cell_type"), _source(c)) for c in notebook.get("cells", [])]
    kernel = notebook.get("metadata", {}).get("kernelspec", {}).get("name", "")
    return hashlib.sha256(json.dumps([kernel, cells]).encode()).hexdigest()


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


class NotebookService:
    """Everything the notebooks API does, independent of HTTP."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        catalog: TemplateCatalog,
        executor: Executor,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.executor = executor
        self._slots = asyncio.Semaphore(settings.notebooks.max_concurrent)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.warmup: asyncio.Future[Any] | None = None
        for job in store.interrupted():
            store.update(
                job.id,
                status="failed",
                finished=time.time(),
                error={
                    "index": None,
                    "ename": "Interrupted",
                    "traceback": "",
                    "evalue": "The notebook service restarted while this run was active",
                },
            )

    # -- templates ------------------------------------------------------------------------
    def templates(self) -> list[Template]:
        return self.catalog.templates()

    def template(self, name: str) -> Template:
        template = self.catalog.get(name)
        if template is None:
            raise NotFoundError(f"No template {name!r}")
        return template

    # -- limits ---------------------------------------------------------------------------
    def concurrency_limit(self, user: AuthenticatedUser) -> int:
        """Concurrent runs *user* may have: the largest ``quotas.notebooks_concurrent`` of
        their configured groups; 0 for a user in none (admins: the default quota)."""
        quotas = [self.settings.groups[g].quotas for g in user.groups if g in self.settings.groups]
        if not quotas:
            return QuotaConfig().notebooks_concurrent if user.admin else 0
        return max(q.notebooks_concurrent for q in quotas)

    def _timeout(self, requested: int | None, template: Template | None) -> int:
        cfg = self.settings.notebooks
        timeout = requested or (template.timeout if template else None) or cfg.default_timeout
        if timeout < 1 or timeout > cfg.max_timeout:
            raise UsageError(
                f"timeout {timeout} is out of range: give 1 to {cfg.max_timeout} seconds"
            )
        return timeout

    def _image(self, image: str | None) -> tuple[str, Path]:
        name = image or next(i.name for i in self.settings.images if i.tag == "recommended")
        try:
            return name, self.executor.python_for(name)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from exc

    # -- submission -----------------------------------------------------------------------
    async def submit_template(
        self,
        user: AuthenticatedUser,
        name: str,
        parameters: dict[str, Any] | None,
        *,
        image: str | None = None,
        timeout: int | None = None,
        fresh: bool = False,
    ) -> tuple[Job, bool]:
        """Start (or find in the cache) a run of template *name*; returns (job, cached)."""
        template = self.template(name)
        if not template.ok:
            raise BrokenTemplateError(f"Template {name!r} is broken: {template.error}")
        try:
            values = validate_parameters(template.parameters, parameters)
        except ParameterError as exc:
            raise UsageError(str(exc)) from exc
        request = RunRequest(
            inject_parameters(template.notebook(), values), template.content_hash, "template",
            template.title, self._timeout(timeout, template), values, template.name,
        )  # fmt: skip
        return await self._submit(user, request, image=image, fresh=fresh)

    async def submit_notebook(
        self,
        user: AuthenticatedUser,
        notebook: dict[str, Any],
        *,
        title: str = "",
        image: str | None = None,
        timeout: int | None = None,
        fresh: bool = False,
    ) -> tuple[Job, bool]:
        """Start (or find in the cache) a run of a notebook the caller sent (noteburst-style)."""
        import nbformat

        try:
            nbformat.validate(nbformat.from_dict(notebook))
            notebook = read_notebook(json.dumps(notebook))
        except Exception as exc:  # nbformat raises several types
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"ipynb is not a valid notebook: {message}") from exc
        # A submitted notebook runs as sent: its parameters cell keeps the caller's values.
        request = RunRequest(
            clear_outputs(notebook), notebook_hash(notebook), "notebook",
            title or "Submitted notebook", self._timeout(timeout, None),
        )  # fmt: skip
        return await self._submit(user, request, image=image, fresh=fresh)

    async def _submit(
        self, user: AuthenticatedUser, request: RunRequest, *, image: str | None, fresh: bool
    ) -> tuple[Job, bool]:
        image_name, python = self._image(image)
        key = hashlib.sha256(
            f"{request.content_hash}:{params_digest(request.values)}:{image_name}".encode()
        ).hexdigest()
        if not fresh and (hit := self.store.find_cached(user.name, key)) is not None:
            return hit, True
        limit = self.concurrency_limit(user)
        active = self.store.count_active(user.name)
        if active >= limit:
            raise QuotaExceededError(
                f"You have {active} notebook run(s) queued or running; your limit is {limit}. "
                "Wait for one to finish or cancel one."
            )
        job = self.store.create(
            owner=user.name, kind=request.kind, template=request.template, title=request.title,
            params=request.values, image=image_name, cache_key=key, status="queued",
            timeout=request.timeout,
        )  # fmt: skip
        (self.store.job_dir(job.id) / "input.ipynb").write_text(json.dumps(request.notebook))
        task = asyncio.create_task(self._run(job, request.notebook, user, python))
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t, job_id=job.id: self._tasks.pop(job_id, None))
        return job, False

    # -- execution ------------------------------------------------------------------------
    async def _run(
        self, job: Job, notebook: dict[str, Any], user: AuthenticatedUser, python: Path
    ) -> None:
        directory = self.store.job_dir(job.id)
        try:
            async with self._slots:
                self.store.update(job.id, status="running", started=time.time())
                run_as = await self.executor.run_as(user.name, user.token)
                progress: dict[str, Any] = {"done": 0, "timings": []}

                def on_event(event: dict[str, Any]) -> None:
                    kind = event.get("event")
                    if kind == "kernel":
                        self.store.update(
                            job.id, kernel_seconds=event.get("seconds"),
                            total_cells=int(event.get("total") or 0),
                        )  # fmt: skip
                    elif kind == "cell":
                        progress["done"] += 1
                        progress["timings"].append(
                            {"index": event["index"], "seconds": event.get("seconds")}
                        )
                        self.store.update(
                            job.id, done_cells=progress["done"], cell_timings=progress["timings"]
                        )

                result = await self.executor.execute(
                    notebook,
                    run_as=run_as,
                    python=python,
                    timeout=job.timeout,
                    discovery=self._discovery(),
                    environment=self._lab_environment(user.name),
                    on_event=on_event,
                )
            await self._finish(job, result, directory)
        except asyncio.CancelledError:
            self.store.update(
                job.id, status="cancelled", finished=time.time(),
                error={"index": None, "ename": "Cancelled", "evalue": "The run was cancelled",
                       "traceback": ""},
            )  # fmt: skip
            raise
        except ServiceError as exc:
            self.store.update(
                job.id, status="failed", finished=time.time(),
                error={"index": None, "ename": type(exc).__name__, "evalue": exc.message,
                       "traceback": ""},
            )  # fmt: skip
        except Exception as exc:
            log.exception("notebook run %s failed in the service", job.id)
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.store.update(
                job.id, status="failed", finished=time.time(),
                error={"index": None, "ename": "ServiceError", "traceback": "",
                       "evalue": f"The run could not be executed: {message}"},
            )  # fmt: skip

    async def _finish(self, job: Job, result: ExecutionResult, directory: Path) -> None:
        (directory / "output.ipynb").write_text(json.dumps(result.notebook))
        if result.stderr:
            (directory / "stderr.txt").write_text(result.stderr)
        try:
            html = await asyncio.to_thread(render_html, result.notebook, title=job.title)
            (directory / "output.html").write_text(html)
            # Kept compressed too: a cached render is then ~1/4 of the bytes through the proxy.
            (directory / "output.html.gz").write_bytes(gzip.compress(html.encode(), 6))
        except Exception:
            log.exception("rendering run %s as HTML failed", job.id)
        timings = [t for t in result.cell_timings if t.get("seconds") is not None]
        self.store.update(
            job.id,
            status=result.status,
            finished=time.time(),
            total_cells=result.total_cells,
            done_cells=len(timings),
            kernel_seconds=result.kernel_seconds,
            cell_timings=result.cell_timings,
            error=result.error,
        )

    def _discovery(self) -> dict[str, Any]:
        from sciplat.client import discovery_document

        try:  # the same data set entries labs get
            from sciplat.hub.hubconfig import dataset_descriptions

            datasets = dataset_descriptions(self.settings)
        except ImportError:
            log.warning("hub configuration not importable; runs get no data sets", exc_info=True)
            datasets = {}
        doc = discovery_document(self.settings.public_url, datasets=datasets)
        return doc.model_dump(mode="json")

    def _lab_environment(self, username: str) -> dict[str, str]:
        """The service settings a lab's environment carries, so notebooks run here find the
        same services: the gateway (``sciplat.get_gateway()`` needs ``DASK_GATEWAY__*``) and
        the portal (``FIREFLY_URL`` and ``FIREFLY_CHANNEL``, the channel signed for the run's
        owner, as their lab gets it)."""
        from sciplat.services.portal.channels import DEFAULT_NONCE, ChannelSigner, channel_secret
        from sciplat.services.portal.hubconf import SERVICE_NAME

        portal_url = f"{self.settings.public_url}/services/{SERVICE_NAME}"
        signer = ChannelSigner(channel_secret(self.settings))
        env = {
            "FIREFLY_URL": portal_url,
            "SCIPLAT_PORTAL_URL": portal_url,
            "FIREFLY_CHANNEL": signer.make(username, DEFAULT_NONCE),
        }
        try:
            from sciplat.hub.gateway import lab_environment
        except ImportError:
            log.warning("gateway configuration not importable; runs get no gateway", exc_info=True)
            return env
        return {**lab_environment(self.settings), **env}

    async def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Wait until *job_id*'s background task ends (tests and benchmarks)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- reading --------------------------------------------------------------------------
    def job(self, user: AuthenticatedUser, job_id: str) -> Job:
        """A run the caller may see: their own, or one its owner shared."""
        job = self.store.get(job_id)
        if job is None or (job.owner != user.name and not job.shared):
            raise NotFoundError(f"No notebook run {job_id!r}")
        return job

    def output_file(self, user: AuthenticatedUser, job_id: str, name: str) -> Path:
        job = self.job(user, job_id)
        path = self.store.job_dir(job.id) / name
        if not path.is_file():
            state = "still running" if job.active else job.status
            raise NotFoundError(f"Run {job_id!r} has no {name} ({state})")
        return path

    def history(
        self,
        user: AuthenticatedUser,
        *,
        template: str | None = None,
        shared: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        return self.store.history(user.name, template=template, include_shared=shared,
                                  limit=limit)  # fmt: skip

    async def cancel(self, user: AuthenticatedUser, job_id: str) -> Job:
        job = self.job(user, job_id)
        if job.owner != user.name:
            raise PermissionDeniedError("Only the owner of a run can cancel it")
        task = self._tasks.get(job.id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return self.job(user, job_id)

    def share(self, user: AuthenticatedUser, job_id: str, shared: bool) -> Job:
        job = self.job(user, job_id)
        if job.owner != user.name:
            raise PermissionDeniedError("Only the owner of a run can share it")
        self.store.update(job.id, shared=shared)
        return self.job(user, job_id)
