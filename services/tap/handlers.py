"""TAP HTTP routes: /sync, /async (UWS), /capabilities, /availability, /tables, /examples,
/history. Handlers only translate between HTTP and :class:`~.services.TapService`."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import (
    NotFoundError,
    ServiceError,
    ServiceUnavailableError,
    UsageError,
)
from sciplat.services.common.params import DaliParams, dali_params
from sciplat.services.common.uws.handlers import UWSRoutes, install_uws_routes
from sciplat.services.common.uws.service import UWSService
from sciplat.services.common.vosi import availability_xml, xml_response
from sciplat.services.common.votable import VOTABLE_MEDIA_TYPE, error_votable
from sciplat.services.tap.metadata import (
    capabilities_document,
    data_models,
    examples_document,
    table_xml,
    tables_document,
)
from sciplat.services.tap.services import JOB_PARAMETERS, TapService, parse_request
from sciplat.services.tap.upload import (
    MAX_UPLOAD_BYTES,
    UploadSpec,
    fetch_upload,
    parse_upload_param,
)

__all__ = ["TAP_SCOPE", "TapState", "build_router"]

TAP_SCOPE = "custom:tap:read"
_read = require_scope(TAP_SCOPE)


class TapState:
    """What the plugin keeps in ``context.state['tap']``."""

    def __init__(
        self, service: TapService | None, jobs: UWSService | None, reason: str = ""
    ) -> None:
        self.service = service
        self.jobs = jobs
        self.reason = reason


def _state(request: Request) -> TapState:
    return request.app.state.context.state["tap"]


def _service(request: Request) -> TapService:
    state = _state(request)
    if state.service is None:
        raise ServiceUnavailableError(f"The TAP service is not available: {state.reason}")
    return state.service


def _jobs(request: Request) -> UWSService:
    state = _state(request)
    if state.jobs is None:
        raise ServiceUnavailableError(f"The TAP service is not available: {state.reason}")
    return state.jobs


def _base_url(request: Request) -> str:
    return f"{request.app.state.context.public_url}/tap"


async def _read_uploads(
    request: Request, params: DaliParams, specs: list[UploadSpec], user: AuthenticatedUser
) -> dict[str, bytes]:
    """The content of each upload, keyed by lower-cased table name."""
    context = request.app.state.context
    contents = {}
    for spec in specs:
        if spec.url is not None:
            data = await fetch_upload(spec, context.http, context.settings.public_url, user.token)
        else:
            upload = params.files.get((spec.part or "").lower())
            if upload is None:
                raise UsageError(
                    f"UPLOAD names part {spec.part!r}, but the request has no such part"
                )
            data = await upload.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise UsageError(
                    f"Upload {spec.table!r} is larger than {MAX_UPLOAD_BYTES // 2**20} MiB"
                )
        contents[spec.table.lower()] = data
    return contents


def build_router() -> APIRouter:
    router = APIRouter()

    async def run_sync(request: Request, user: AuthenticatedUser, params: DaliParams) -> Response:
        service = _service(request)
        tap_request = dataclasses.replace(
            parse_request(params, service.settings), owner=user.name, groups=user.groups
        )
        if tap_request.dest_table:
            raise UsageError("DEST_TABLE is accepted by /async only")
        uploads = await _read_uploads(request, params, tap_request.uploads, user)
        service.quota.acquire(user.name, user.groups)
        started = time.time()
        timeout = service.settings.catalog.query_timeout

        def start() -> bytes | Iterator[bytes]:
            try:
                stream = service.open(tap_request, uploads, timeout=timeout)
            except BaseException as exc:
                service.quota.release(user.name)
                if isinstance(exc, ServiceError):
                    service.record(
                        user.name,
                        "sync",
                        tap_request.query,
                        started,
                        status="ERROR",
                        message=exc.message,
                    )
                raise
            # From here on the body releases the slot and logs the query, whatever happens.
            return service.sync_response(stream, tap_request, user.name, started)

        body = await asyncio.to_thread(start)
        if isinstance(body, bytes):
            return Response(body, media_type=tap_request.format.media_type)
        return StreamingResponse(body, media_type=tap_request.format.media_type)

    @router.api_route("/sync", methods=["GET", "POST"])
    async def sync(
        request: Request,
        user: AuthenticatedUser = Depends(_read),
        params: DaliParams = Depends(dali_params),
    ) -> Response:
        """Run an ADQL query and stream its result (TAP 1.1 §2.2.1)."""
        return await run_sync(request, user, params)

    def uws_service(request: Request) -> UWSService:
        return _jobs(request)

    install_uws_routes(
        router,
        "/async",
        UWSRoutes(
            service=uws_service,
            user=_read,
            job_parameters=_job_parameters,
            error_document=lambda message: Response(
                error_votable(message), media_type=VOTABLE_MEDIA_TYPE
            ),
            base_url=lambda request: f"{_base_url(request)}/async",
        ),
    )

    @router.get("/capabilities")
    async def capabilities(request: Request) -> Response:
        """VOSI capabilities (anonymous)."""
        state = _state(request)
        settings = request.app.state.context.settings
        retention = state.jobs.retention if state.jobs else 0
        schema = state.service.schema if state.service is not None else None
        return xml_response(
            capabilities_document(
                _base_url(request), settings, retention, models=data_models(schema)
            )
        )

    @router.get("/availability")
    async def availability(request: Request) -> Response:
        """VOSI availability (anonymous)."""
        state = _state(request)
        if state.service is None:
            return xml_response(availability_xml(False, state.reason))
        return xml_response(availability_xml(True, "The TAP service is accepting queries"))

    @router.get("/tables")
    async def tables(
        request: Request,
        user: AuthenticatedUser = Depends(_read),
        params: DaliParams = Depends(dali_params),
    ) -> Response:
        """VOSI tables, always with columns.

        ``detail=min`` is accepted but answered in full: pyvo (1.9) fetches per-table details
        without the session's credentials, so a minimal answer breaks authenticated clients.
        """
        detail = (params.single("detail") or "max").lower()
        if detail not in ("min", "max"):
            raise UsageError(f"detail must be min or max, not {detail!r}")
        return xml_response(tables_document(_service(request).schema_for(user.name, user.groups)))

    @router.get("/tables/{name}")
    async def table(
        request: Request, name: str, user: AuthenticatedUser = Depends(_read)
    ) -> Response:
        meta = _service(request).schema_for(user.name, user.groups).table(name)
        if meta is None:
            raise NotFoundError(f"No table {name!r}")
        return xml_response('<?xml version="1.0" encoding="UTF-8"?>\n' + table_xml(meta, root=True))

    @router.get("/examples")
    async def examples(request: Request, user: AuthenticatedUser = Depends(_read)) -> Response:
        """DALI examples: queries that run on this service's tables."""
        document = examples_document(_service(request).schema, _base_url(request))
        return Response(document, media_type="application/xhtml+xml")

    @router.get("/history")
    async def history(
        request: Request,
        user: AuthenticatedUser = Depends(_read),
        params: DaliParams = Depends(dali_params),
    ) -> JSONResponse:
        """The caller's recent queries (newest first), with links to their async jobs."""
        limit_text = params.single("limit") or "100"
        if not limit_text.isdigit() or not 0 < int(limit_text) <= 1000:
            raise UsageError(f"limit must be an integer from 1 to 1000, not {limit_text!r}")
        service = _service(request)
        base = _base_url(request)
        listed = service.history.list(user.name, limit=int(limit_text))
        # Deleted (or expired) jobs keep their history entry, without a link that would 404.
        alive = _jobs(request).store.existing([e.job_id for e in listed if e.job_id])
        entries: list[dict[str, Any]] = []
        for entry in listed:
            item = dict(entry.__dict__)
            item.pop("owner")
            if entry.job_id in alive:
                item["job_url"] = f"{base}/async/{entry.job_id}"
            elif entry.job_id:
                item["job_deleted"] = True
            entries.append(item)
        return JSONResponse({"user": user.name, "queries": entries})

    return router


async def _job_parameters(
    request: Request, params: DaliParams, job_id: str, user: AuthenticatedUser
) -> list[tuple[str, str]]:
    """Keep the TAP parameters of a new job and save its inline uploads next to it."""
    kept = [(name, value) for name, value in params if name in JOB_PARAMETERS]
    service = _service(request)
    service.remember_groups(job_id, user.groups, _jobs(request).job_dir(job_id))
    dest_table = params.single("dest_table")
    if dest_table is not None:
        if service.user_tables is None:
            raise UsageError("DEST_TABLE needs MyDB, which this service does not run")
        service.user_tables.check_destination(dest_table, user.name, user.groups)
    specs = parse_upload_param(params.getlist("upload"))
    if specs:
        contents = await _read_uploads(request, params, specs, user)
        directory = _jobs(request).job_dir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        for table, data in contents.items():
            (directory / f"upload-{table}").write_bytes(data)
    return kept
