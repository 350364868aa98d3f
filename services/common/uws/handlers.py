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

    async def apply_phase(service: UWSService, job, value: str):
        phase = value.strip().upper()
        if phase == "RUN":
            return await service.run(job)
        if phase == "ABORT":
            return await service.abort(job)
        raise UsageError(f"PHASE must be RUN or ABORT, not {value!r}")

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
        if duration := params.single("executionduration"):
            job = service.set_execution_duration(job, duration)
        if destruction := params.single("destruction"):
            job = service.set_destruction(job, _when(destruction))
        if phase := params.single("phase"):
            await apply_phase(service, job, phase)
        return RedirectResponse(job_url(request, job_id), status_code=303)

    @router.get(prefix + "/{job_id}")
    async def get_job(
        request: Request,
        job_id: str,
        user: AuthenticatedUser = user_dep,
        params: DaliParams = params_dep,
    ) -> Response:
        service = routes.service(request)
        job = service.get(user.name, job_id)
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
        job_id: str,
        user: AuthenticatedUser = user_dep,
        params: DaliParams = params_dep,
    ) -> Response:
        service = routes.service(request)
        job = service.get(user.name, job_id)
        action = params.single("action")
        if action is not None:
            if action.strip().upper() != "DELETE":
                raise UsageError(f"ACTION must be DELETE, not {action!r}")
            await service.delete(job)
            return RedirectResponse(routes.base_url(request), status_code=303)
        if duration := params.single("executionduration"):
            job = service.set_execution_duration(job, duration)
        if destruction := params.single("destruction"):
            job = service.set_destruction(job, _when(destruction))
        if phase := params.single("phase"):
            await apply_phase(service, job, phase)
        return RedirectResponse(job_url(request, job_id), status_code=303)

    @router.delete(prefix + "/{job_id}")
    async def delete_job(
        request: Request, job_id: str, user: AuthenticatedUser = user_dep
    ) -> Response:
        service = routes.service(request)
        await service.delete(service.get(user.name, job_id))
        return RedirectResponse(routes.base_url(request), status_code=303)

    @router.get(prefix + "/{job_id}/phase")
    async def get_phase(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        return PlainTextResponse(routes.service(request).get(user.name, job_id).phase.value)

    @router.post(prefix + "/{job_id}/phase")
    async def post_phase(
        request: Request,
        job_id: str,
        user: AuthenticatedUser = user_dep,
        params: DaliParams = params_dep,
    ) -> Response:
        service = routes.service(request)
        job = service.get(user.name, job_id)
        value = params.single("phase")
        if value is None:
            raise UsageError("PHASE is required (RUN or ABORT)")
        await apply_phase(service, job, value)
        return RedirectResponse(job_url(request, job_id), status_code=303)

    @router.get(prefix + "/{job_id}/executionduration")
    async def get_duration(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        job = routes.service(request).get(user.name, job_id)
        return PlainTextResponse(str(job.execution_duration))

    @router.post(prefix + "/{job_id}/executionduration")
    async def post_duration(
        request: Request,
        job_id: str,
        user: AuthenticatedUser = user_dep,
        params: DaliParams = params_dep,
    ) -> Response:
        service = routes.service(request)
        value = params.single("executionduration")
        if value is None:
            raise UsageError("EXECUTIONDURATION is required")
        service.set_execution_duration(service.get(user.name, job_id), value)
        return RedirectResponse(job_url(request, job_id), status_code=303)

    @router.get(prefix + "/{job_id}/destruction")
    async def get_destruction(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        job = routes.service(request).get(user.name, job_id)
        return PlainTextResponse(iso(job.destruction) or "")

    @router.post(prefix + "/{job_id}/destruction")
    async def post_destruction(
        request: Request,
        job_id: str,
        user: AuthenticatedUser = user_dep,
        params: DaliParams = params_dep,
    ) -> Response:
        service = routes.service(request)
        value = params.single("destruction")
        if value is None:
            raise UsageError("DESTRUCTION is required")
        service.set_destruction(service.get(user.name, job_id), _when(value))
        return RedirectResponse(job_url(request, job_id), status_code=303)

    @router.get(prefix + "/{job_id}/quote")
    async def get_quote(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        routes.service(request).get(user.name, job_id)
        return PlainTextResponse("")

    @router.get(prefix + "/{job_id}/owner")
    async def get_owner(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        return PlainTextResponse(routes.service(request).get(user.name, job_id).owner)

    @router.get(prefix + "/{job_id}/error")
    async def get_error(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        job = routes.service(request).get(user.name, job_id)
        if job.phase != Phase.ERROR:
            raise NotFoundError(f"Job {job_id!r} has no error (phase {job.phase})")
        return routes.error_document(job.error or "unknown error")

    @router.get(prefix + "/{job_id}/parameters")
    async def get_parameters(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        job = routes.service(request).get(user.name, job_id)
        return _xml('<?xml version="1.0" encoding="UTF-8"?>\n' + parameters_xml(job, root=True))

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
    async def get_results(request: Request, job_id: str, user: AuthenticatedUser = user_dep):
        job = routes.service(request).get(user.name, job_id)
        return _xml('<?xml version="1.0" encoding="UTF-8"?>\n' + results_xml(job, root=True))

    @router.get(prefix + "/{job_id}/results/{result_id}")
    async def get_result(
        request: Request, job_id: str, result_id: str, user: AuthenticatedUser = user_dep
    ) -> Response:
        service = routes.service(request)
        job = service.get(user.name, job_id)
        for result in job.results:
            if result.id == result_id:
                path = service.job_dir(job_id) / result_id
                if not path.exists():
                    raise NotFoundError(f"The result of job {job_id!r} is no longer available")
                return FileResponse(path, media_type=result.mime_type)
        raise NotFoundError(f"Job {job_id!r} has no result {result_id!r}")


def _when(value: str) -> float:
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise UsageError(f"DESTRUCTION must be an ISO 8601 timestamp, not {value!r}") from exc
