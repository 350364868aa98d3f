"""UWS 1.1 HTTP routes, installed on a service's router by :func:`install_uws_routes`.

The service supplies how to find its :class:`UWSService`, the auth dependency, how to turn a
request's parameters into job parameters (validation, uploaded files), and how its error
documents look. Jobs are visible to their owner only; anyone else gets 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from sciplat.services.common.auth import AuthenticatedUser
from sciplat.services.common.errors import NotFoundError, UsageError
from sciplat.services.common.params import DaliParams, dali_params
from sciplat.services.common.uws.models import (
    Job,
    Phase,
    iso,
    job_list_xml,
    job_xml,
    parameters_xml,
    parse_iso,
    results_xml,
)
from sciplat.services.common.uws.service import UWSService

__all__ = ["UWSRoutes", "install_uws_routes"]

_CONTROL = {"phase", "action", "destruction", "executionduration", "runid", "wait"}


@dataclass(frozen=True)
class UWSRoutes:
    #: The UWS service of the request's app.
    service: Callable[[Request], UWSService]
    #: The auth dependency (returns the caller).
    user: Callable[..., Awaitable[AuthenticatedUser]]
    #: Turn request parameters into job parameters (may save uploads under the job id).
    job_parameters: Callable[
        [Request, DaliParams, str, AuthenticatedUser], Awaitable[list[tuple[str, str]]]
    ]
    #: Document for GET .../error (TAP: a VOTable).
    error_document: Callable[[str], Response]
    #: Public URL of the job list (".../async").
    base_url: Callable[[Request], str]


def _xml(text: str) -> Response:
    return Response(text, media_type="text/xml")


def _phases(values: list[str]) -> list[Phase]:
    phases = []
    for value in values:
        try:
            phases.append(Phase(value.strip().upper()))
        except ValueError as exc:
            raise UsageError(f"Unknown PHASE {value!r}") from exc
    return phases


def install_uws_routes(router: APIRouter, prefix: str, routes: UWSRoutes) -> None:
    user_dep = Depends(routes.user)
    params_dep = Depends(dali_params)

    def job_url(request: Request, job_id: str) -> str:
        return f"{routes.base_url(request)}/{job_id}"

    async def owned(
        request: Request, job_id: str, user: AuthenticatedUser = user_dep
    ) -> tuple[UWSService, Job]:
        """The UWS service and the caller's job *job_id* (404 for anyone else's)."""
        service = routes.service(request)
        return service, service.get(user.name, job_id)

    job_dep = Depends(owned)

    async def apply_phase(service: UWSService, job: Job, value: str) -> Job:
        phase = value.strip().upper()
        if phase == "RUN":
            return await service.run(job)
        if phase == "ABORT":
            return await service.abort(job)
        raise UsageError(f"PHASE must be RUN or ABORT, not {value!r}")

    async def apply_settings(service: UWSService, job: Job, params: DaliParams) -> None:
        """EXECUTIONDURATION, DESTRUCTION and PHASE, when given (job creation and POST)."""
        for name, setter in _SETTERS.items():
            if value := params.single(name):
                job = setter(service, job, value)
        if phase := params.single("phase"):
            await apply_phase(service, job, phase)

    @router.get(prefix)
    async def list_jobs(
        request: Request, user: AuthenticatedUser = user_dep, params: DaliParams = params_dep
    ) -> Response:
        after = params.single("after")
        last = params.single("last")
        try:
            after_time = parse_iso(after) if after else None
        except ValueError as exc:
            raise UsageError(f"AFTER must be an ISO 8601 timestamp, not {after!r}") from exc
        if last is not None and (not last.isdigit() or int(last) <= 0):
            raise UsageError(f"LAST must be a positive integer, not {last!r}")
        jobs = routes.service(request).list(
            user.name,
            phases=_phases(params.getlist("phase")) or None,
            after=after_time,
            last=int(last) if last else None,
        )
        return _xml(job_list_xml(jobs, routes.base_url(request)))

    @router.post(prefix)
    async def create_job(
        request: Request, user: AuthenticatedUser = user_dep, params: DaliParams = params_dep
    ) -> Response:
        service = routes.service(request)
        job_id = service.new_id()
        parameters = await routes.job_parameters(request, params, job_id, user)
        job = service.create(job_id, user.name, parameters, params.single("runid"))
        await apply_settings(service, job, params)
        return RedirectResponse(job_url(request, job_id), status_code=303)

    @router.get(prefix + "/{job_id}")
    async def get_job(
        found: tuple[UWSService, Job] = job_dep, params: DaliParams = params_dep
    ) -> Response:
        service, job = found
        if (wait := params.single("wait")) is not None:
            try:
                seconds = float(wait)
            except ValueError as exc:
                raise UsageError(f"WAIT must be a number of seconds, not {wait!r}") from exc
            phases = _phases(params.getlist("phase"))
            job = await service.wait(job, seconds, phases[0] if phases else None)
        return _xml(job_xml(job))

    @router.post(prefix + "/{job_id}")
    async def post_job(
        request: Request,
        found: tuple[UWSService, Job] = job_dep,
        params: DaliParams = params_dep,
    ) -> Response:
        service, job = found
        action = params.single("action")
        if action is not None:
            if action.strip().upper() != "DELETE":
                raise UsageError(f"ACTION must be DELETE, not {action!r}")
            await service.delete(job)
            return RedirectResponse(routes.base_url(request), status_code=303)
        await apply_settings(service, job, params)
        return RedirectResponse(job_url(request, job.id), status_code=303)

    @router.delete(prefix + "/{job_id}")
    async def delete_job(request: Request, found: tuple[UWSService, Job] = job_dep) -> Response:
        service, job = found
        await service.delete(job)
        return RedirectResponse(routes.base_url(request), status_code=303)

    def text_route(name: str, value_of: Callable[[Job], str]) -> None:
        async def get_text(found: tuple[UWSService, Job] = job_dep) -> Response:
            return PlainTextResponse(value_of(found[1]))

        router.add_api_route(f"{prefix}/{{job_id}}/{name}", get_text, methods=["GET"])

    for name, value_of in _TEXT.items():
        text_route(name, value_of)

    def setter_route(name: str) -> None:
        async def post_setting(
            request: Request,
            found: tuple[UWSService, Job] = job_dep,
            params: DaliParams = params_dep,
        ) -> Response:
            service, job = found
            value = params.single(name)
            if value is None:
                raise UsageError(_REQUIRED[name])
            if name == "phase":
                await apply_phase(service, job, value)
            else:
                _SETTERS[name](service, job, value)
            return RedirectResponse(job_url(request, job.id), status_code=303)

        router.add_api_route(f"{prefix}/{{job_id}}/{name}", post_setting, methods=["POST"])

    for name in _REQUIRED:
        setter_route(name)

    @router.get(prefix + "/{job_id}/error")
    async def get_error(found: tuple[UWSService, Job] = job_dep):
        job = found[1]
        if job.phase != Phase.ERROR:
            raise NotFoundError(f"Job {job.id!r} has no error (phase {job.phase})")
        return routes.error_document(job.error or "unknown error")

    @router.get(prefix + "/{job_id}/parameters")
    async def get_parameters(found: tuple[UWSService, Job] = job_dep):
        return _xml(_XML_HEAD + parameters_xml(found[1], root=True))

    @router.post(prefix + "/{job_id}/parameters")
    async def post_parameters(
        request: Request,
        job_id: str,
        user: AuthenticatedUser = user_dep,
        params: DaliParams = params_dep,
    ) -> Response:
        service = routes.service(request)
        job = service.get(user.name, job_id)
        new = await routes.job_parameters(request, params, job_id, user)
        new = [(k, v) for k, v in new if k not in _CONTROL]
        service.update_parameters(job, new)
        return RedirectResponse(job_url(request, job_id), status_code=303)

    @router.get(prefix + "/{job_id}/results")
    async def get_results(found: tuple[UWSService, Job] = job_dep):
        return _xml(_XML_HEAD + results_xml(found[1], root=True))

    @router.get(prefix + "/{job_id}/results/{result_id}")
    async def get_result(result_id: str, found: tuple[UWSService, Job] = job_dep) -> Response:
        service, job = found
        for result in job.results:
            if result.id == result_id:
                path = service.job_dir(job.id) / result_id
                if not path.exists():
                    raise NotFoundError(f"The result of job {job.id!r} is no longer available")
                return FileResponse(path, media_type=result.mime_type)
        raise NotFoundError(f"Job {job.id!r} has no result {result_id!r}")


_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'

#: GET .../{job_id}/<name>: the job's property as plain text.
_TEXT: dict[str, Callable[[Job], str]] = {
    "phase": lambda job: job.phase.value,
    "executionduration": lambda job: str(job.execution_duration),
    "destruction": lambda job: iso(job.destruction) or "",
    "quote": lambda job: "",
    "owner": lambda job: job.owner,
}

#: POST .../{job_id}/<name>: what a missing value is told.
_REQUIRED = {
    "phase": "PHASE is required (RUN or ABORT)",
    "executionduration": "EXECUTIONDURATION is required",
    "destruction": "DESTRUCTION is required",
}

#: Settings a job creation or a POST may carry, applied in this order (before PHASE).
_SETTERS: dict[str, Callable[[UWSService, Job, str], Job]] = {
    "executionduration": lambda service, job, value: service.set_execution_duration(job, value),
    "destruction": lambda service, job, value: service.set_destruction(job, _when(value)),
}


def _when(value: str) -> float:
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise UsageError(f"DESTRUCTION must be an ISO 8601 timestamp, not {value!r}") from exc
