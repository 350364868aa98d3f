"""HTTP routes of the notebooks service (``/services/api/notebooks/...``); thin on purpose.

JSON API (token with ``custom:notebooks:exec``):

    GET    /templates                          the catalogue, broken templates included
    GET    /templates/{collection}/{stem}      one template and its parameter schema
    GET    /templates/{collection}/{stem}/form the run form, as an HTML fragment
    POST   /templates/{collection}/{stem}/runs {"parameters": {...}, "image", "timeout"} -> job
    POST   /jobs                               {"ipynb": notebook, "image", "timeout"} -> job
    GET    /jobs?template=&shared=             run history of the caller
    GET    /jobs/{id}                          status, progress, per-cell timing, error
    GET    /jobs/{id}/html | /jobs/{id}/ipynb  results
    DELETE /jobs/{id}                          cancel
    PUT    /jobs/{id}/share                    {"shared": true} makes the link readable by others

The commissioning page is ``GET /ui`` (see :mod:`.web`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import NotFoundError, UsageError
from sciplat.services.notebooks.params import form_fields
from sciplat.services.notebooks.service import NotebookService
from sciplat.services.notebooks.store import Job

__all__ = ["SCOPE", "build_router"]

SCOPE = "custom:notebooks:exec"
exec_user = require_scope(SCOPE)


class TemplateRunRequest(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    image: str | None = Field(None, description="Lab image (environment) to run in.")
    timeout: int | None = Field(None, description="Seconds before the run is stopped.")
    fresh: bool = Field(False, description="Run even if a cached result exists.")


class NotebookRunRequest(BaseModel):
    ipynb: dict[str, Any] | str = Field(description="The notebook (JSON object or its text).")
    title: str = ""
    image: str | None = None
    timeout: int | None = None
    fresh: bool = False
    kernel_name: str | None = Field(None, description="Accepted for noteburst compatibility.")


class ShareRequest(BaseModel):
    shared: bool = True


def service(request: Request) -> NotebookService:
    return request.app.state.context.state["notebooks"]


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def job_json(request: Request, job: Job, *, cached: bool = False) -> dict[str, Any]:
    base = f"{request.app.state.context.public_url}/notebooks"
    url = f"{base}/jobs/{job.id}"
    return {
        "id": job.id,
        "url": url,
        "html_url": f"{url}/html",
        "ipynb_url": f"{url}/ipynb",
        "page_url": f"{base}/ui?run={job.id}",
        "status": job.status,
        "owner": job.owner,
        "kind": job.kind,
        "template": job.template,
        "title": job.title,
        "parameters": job.params,
        "image": job.image,
        "timeout": job.timeout,
        "created": _iso(job.created),
        "started": _iso(job.started),
        "finished": _iso(job.finished),
        "progress": {"done": job.done_cells, "total": job.total_cells},
        "kernel_seconds": job.kernel_seconds,
        "cell_timings": job.cell_timings,
        "error": job.error,
        "shared": job.shared,
        "cached": cached,
    }


def build_router() -> APIRouter:
    router = APIRouter()

    @router.get("/templates")
    async def list_templates(
        request: Request, user: AuthenticatedUser = Depends(exec_user)
    ) -> dict[str, Any]:
        return {"templates": [t.summary() for t in service(request).templates()]}

    @router.get("/templates/{collection}/{stem}")
    async def get_template(
        collection: str, stem: str, request: Request,
        user: AuthenticatedUser = Depends(exec_user),
    ) -> dict[str, Any]:  # fmt: skip
        return service(request).template(f"{collection}/{stem}").summary()

    @router.get("/templates/{collection}/{stem}/form", response_class=HTMLResponse)
    async def get_form(
        collection: str, stem: str, request: Request,
        user: AuthenticatedUser = Depends(exec_user),
    ) -> HTMLResponse:  # fmt: skip
        from sciplat.services.notebooks.web import render_form

        svc = service(request)
        template = svc.template(f"{collection}/{stem}")
        images = [i.name for i in svc.settings.images]
        return HTMLResponse(render_form(template, form_fields(template.parameters), images))

    @router.post("/templates/{collection}/{stem}/runs")
    async def run_template(
        collection: str, stem: str, body: TemplateRunRequest, request: Request,
        user: AuthenticatedUser = Depends(exec_user),
    ) -> JSONResponse:  # fmt: skip
        job, cached = await service(request).submit_template(
            user, f"{collection}/{stem}", body.parameters,
            image=body.image, timeout=body.timeout, fresh=body.fresh,
        )  # fmt: skip
        return _created(request, job, cached)

    @router.post("/jobs")
    async def run_notebook(
        body: NotebookRunRequest, request: Request, user: AuthenticatedUser = Depends(exec_user)
    ) -> JSONResponse:
        notebook = body.ipynb
        if isinstance(notebook, str):
            try:
                notebook = json.loads(notebook)
            except ValueError as exc:
                raise UsageError(f"ipynb is not JSON: {exc}") from exc
        if not isinstance(notebook, dict):
            raise UsageError("ipynb must be a notebook object")
        job, cached = await service(request).submit_notebook(
            user, notebook, title=body.title, image=body.image, timeout=body.timeout,
            fresh=body.fresh,
        )  # fmt: skip
        return _created(request, job, cached)

    @router.get("/jobs")
    async def history(
        request: Request,
        template: str | None = None,
        shared: bool = False,
        limit: int = 100,
        user: AuthenticatedUser = Depends(exec_user),
    ) -> dict[str, Any]:
        if not 1 <= limit <= 1000:
            raise UsageError("limit must be between 1 and 1000")
        jobs = service(request).history(user, template=template, shared=shared, limit=limit)
        return {"jobs": [job_json(request, j) for j in jobs]}

    @router.get("/jobs/{job_id}")
    async def get_job(
        job_id: str, request: Request, user: AuthenticatedUser = Depends(exec_user)
    ) -> dict[str, Any]:
        return job_json(request, service(request).job(user, job_id))

    @router.get("/jobs/{job_id}/{kind}")
    async def get_output(
        job_id: str, kind: str, request: Request, user: AuthenticatedUser = Depends(exec_user)
    ) -> Response:
        if kind not in _MEDIA_TYPES:
            raise NotFoundError(f"No {kind!r} output: give html or ipynb")
        path = service(request).output_file(user, job_id, f"output.{kind}")
        if kind == "ipynb":
            return FileResponse(path, media_type=_MEDIA_TYPES[kind], filename=f"run-{job_id}.ipynb")
        # Notebook output is untrusted HTML: never let it run with this origin's rights.
        headers = {**_SANDBOX, "Vary": "Accept-Encoding"}
        packed = path.with_name(f"{path.name}.gz")
        if "gzip" in request.headers.get("accept-encoding", "") and packed.is_file():
            headers["Content-Encoding"] = "gzip"
            path = packed
        return FileResponse(path, media_type=_MEDIA_TYPES[kind], headers=headers)

    @router.delete("/jobs/{job_id}")
    async def cancel(
        job_id: str, request: Request, user: AuthenticatedUser = Depends(exec_user)
    ) -> dict[str, Any]:
        return job_json(request, await service(request).cancel(user, job_id))

    @router.put("/jobs/{job_id}/share")
    async def share(
        job_id: str, body: ShareRequest, request: Request,
        user: AuthenticatedUser = Depends(exec_user),
    ) -> dict[str, Any]:  # fmt: skip
        return job_json(request, service(request).share(user, job_id, body.shared))

    from sciplat.services.notebooks.web import add_page_routes

    add_page_routes(router)
    return router


#: A run's outputs (``/jobs/{id}/{kind}``) and their media types.
_MEDIA_TYPES = {"html": "text/html; charset=utf-8", "ipynb": "application/x-ipynb+json"}
_SANDBOX = {"Content-Security-Policy": "sandbox allow-scripts allow-popups"}


def _created(request: Request, job: Job, cached: bool) -> JSONResponse:
    body = job_json(request, job, cached=cached)
    status = 200 if cached else 202
    return JSONResponse(body, status_code=status, headers={"Location": body["url"]})
