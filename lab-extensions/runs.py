"""Run with parameters: a notebook in the lab with a template sidecar (``<stem>.yaml`` next to
it), run through the platform's notebook-execution service as the user.

The sidecar is read and checked by the notebooks service's own catalogue code and parameters by
its own validator (:mod:`sciplat.services.notebooks`), so a form that passes here passes there.
The run is submitted to the service's ``POST /jobs`` with the parameters already injected.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from sciplat.labextension.errors import BadRequest, NotFound, Unprocessable
from sciplat.labextension.paths import resolve_in_root
from sciplat.labextension.platform import PlatformClient

__all__ = ["job_html", "job_status", "load_template", "run_schema", "submit_run"]

_JOB_ID = r"[A-Za-z0-9_-]{1,64}"


def load_template(lab_root: Path, relative: object) -> Any:
    """The notebooks service's :class:`Template` for lab notebook *relative*, or None when it
    has no sidecar. Raises 400/404 for bad paths."""
    path = resolve_in_root(lab_root, relative)
    if path.suffix != ".ipynb" or not path.is_file():
        raise BadRequest(f"{relative!r} is not a notebook (.ipynb).")
    if not any(path.with_suffix(s).is_file() for s in (".yaml", ".yml")):
        return None
    from sciplat.services.notebooks.catalog import TemplateCatalog

    catalog = TemplateCatalog([path.parent])
    return catalog.get(f"{path.parent.name}/{path.stem}")


def _require(template: Any, relative: object) -> Any:
    if template is None:
        raise Unprocessable(
            f"{relative!r} has no template sidecar: add a {Path(str(relative)).stem}.yaml with "
            "a title and parameters next to it (see docs/notebooks.md).",
            code="no-template",
        )
    if not template.ok:
        raise Unprocessable(
            f"The template sidecar of {relative!r} is invalid: {template.error}",
            code="bad-sidecar",
        )
    return template


async def run_schema(lab_root: Path, relative: object) -> dict[str, Any]:
    """The contract's ``run/schema`` answer."""
    template = await asyncio.to_thread(load_template, lab_root, relative)
    if template is None:
        return {"has_template": False, "title": "", "description": "", "schema": None}
    _require(template, relative)
    schema = {
        "type": "object",
        "properties": template.parameters,
        "required": sorted(template.parameters),
        "additionalProperties": False,
    }
    return {
        "has_template": True,
        "title": template.title,
        "description": template.description,
        "schema": schema,
        "timeout": template.timeout,
    }


async def submit_run(
    platform: PlatformClient, lab_root: Path, relative: object, parameters: object, base_url: str
) -> dict[str, Any]:
    """Validate *parameters* against the sidecar, inject them and submit the notebook to the
    execution service; ``{"job_id", "status_url", "html_url", "status"}``."""
    from sciplat.services.notebooks.params import (
        ParameterError,
        inject_parameters,
        validate_parameters,
    )

    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object of name -> value.")
    template = _require(await asyncio.to_thread(load_template, lab_root, relative), relative)
    try:
        values = validate_parameters(template.parameters, parameters)
    except ParameterError as exc:
        raise Unprocessable(str(exc), code="bad-parameters", field=exc.field) from exc
    notebook = inject_parameters(await asyncio.to_thread(template.notebook), values)
    shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
    body: dict[str, Any] = {
        "ipynb": notebook,
        "title": f"{template.title} ({shown})" if shown else template.title,
    }
    if platform.env.get("SCIPLAT_IMAGE"):
        body["image"] = platform.env["SCIPLAT_IMAGE"]
    if template.timeout:
        body["timeout"] = template.timeout
    service = platform.url("notebooks")
    response = await platform.request("notebooks", "POST", f"{service}/jobs", json=body)
    if response.status_code not in (200, 202):
        raise Unprocessable(_message(response), code="run-refused")
    job = response.json()
    return _job_answer(job, base_url)


def _message(response: Any) -> str:
    try:
        data = response.json()
        return str(data.get("message") or data.get("detail") or data)
    except ValueError:
        return response.text[:500]


def _job_answer(job: dict[str, Any], base_url: str) -> dict[str, Any]:
    job_id = job["id"]
    own = f"{base_url.rstrip('/')}/sciplat-lab/run/{quote(job_id)}"
    return {
        "job_id": job_id,
        "status": job.get("status"),
        "status_url": own,
        "html_url": f"{own}/html",
        "page_url": job.get("page_url"),
        "error": job.get("error"),
        "progress": job.get("progress"),
    }


def _check_job_id(job_id: str) -> None:
    import re

    if not re.fullmatch(_JOB_ID, job_id):
        raise BadRequest(f"{job_id!r} is not a notebook run id.")


async def job_status(platform: PlatformClient, job_id: str, base_url: str) -> dict[str, Any]:
    """The contract's ``run/<job_id>`` answer: the service's job status, proxied."""
    response = await _get_job(platform, job_id, "", f"You have no notebook run {job_id!r}.")
    return _job_answer(response.json(), base_url)


async def job_html(platform: PlatformClient, job_id: str) -> bytes:
    """The rendered notebook of run *job_id* (for the lab tab; the service needs the token,
    which an iframe cannot send)."""
    missing = f"Run {job_id!r} has no rendered notebook (yet)."
    return (await _get_job(platform, job_id, "/html", missing)).content


async def _get_job(
    platform: PlatformClient, job_id: str, suffix: str, missing: str
) -> httpx.Response:
    """GET ``jobs/<job_id><suffix>`` of the notebooks service; 404 is NotFound(*missing*)."""
    _check_job_id(job_id)
    service = platform.url("notebooks")
    response = await platform.request("notebooks", "GET", f"{service}/jobs/{job_id}{suffix}")
    if response.status_code == 404:
        raise NotFound(missing)
    if response.status_code != 200:
        raise Unprocessable(_message(response), code="run-refused")
    return response
