"""MyDB HTTP routes (``/services/api/mydb``); JSON in and out, errors as JSON.

Reading (list, describe) takes ``custom:tap:read``; creating, dropping and sharing take
``custom:mydb:write``. Table names are ``name`` (your own schema) or ``schema.name``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import (
    NotFoundError,
    ServiceUnavailableError,
    UsageError,
)
from sciplat.services.mydb.formats import read_table_file
from sciplat.services.mydb.names import TableName
from sciplat.services.mydb.service import Caller, MyDBService

__all__ = ["READ_SCOPE", "WRITE_SCOPE", "PayloadTooLargeError", "build_router"]

READ_SCOPE = "custom:tap:read"
WRITE_SCOPE = "custom:mydb:write"
_read = require_scope(READ_SCOPE)
_write = require_scope(WRITE_SCOPE)


class PayloadTooLargeError(UsageError, status=413, code="PayloadTooLarge"):
    """The upload is larger than ``mydb.max_upload_bytes`` (HTTP 413)."""


def _service(request: Request) -> MyDBService:
    service = request.app.state.context.state.get("mydb")
    if service is None:
        raise ServiceUnavailableError("MyDB is not available")
    return service


def _caller(user: AuthenticatedUser) -> Caller:
    return Caller(user.name, tuple(user.groups))


def _named(
    request: Request, name: str, user: AuthenticatedUser
) -> tuple[MyDBService, Caller, TableName]:
    """The service, the caller and the table *name* resolved for them (400 for bad names)."""
    service = _service(request)
    caller = _caller(user)
    return service, caller, service.name(name, caller)


def _writable(
    request: Request, name: str, user: AuthenticatedUser, overwrite: str | None
) -> tuple[MyDBService, Caller, TableName, bool]:
    """As :func:`_named`, checked for a create (write rights, collisions) before any upload is
    read; with the ``overwrite`` flag parsed."""
    service, caller, table_name = _named(request, name, user)
    replace = _flag(overwrite)
    service.prepare(table_name, caller, overwrite=replace)
    return service, caller, table_name, replace


async def _create_from_file(
    service: MyDBService,
    path: Path,
    table_name: TableName,
    caller: Caller,
    *,
    overwrite: bool,
    source: str,
) -> JSONResponse:
    """Read table file *path* (format sniffed) into *table_name*; 201 with its record.
    ``{format}`` in *source* becomes the format found."""

    def load_and_store():
        loaded = read_table_file(path)
        return service.create(
            table_name,
            loaded.table,
            caller,
            overwrite=overwrite,
            source=source.replace("{format}", loaded.format),
            info=loaded.info,
        )

    record = await asyncio.to_thread(load_and_store)
    return JSONResponse(record.to_json(), status_code=201)


def _flag(value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise UsageError(f"overwrite must be true or false, not {value!r}")


async def _receive(request: Request, directory: Path, limit: int) -> Path:
    """Stream the request body to a temporary file, refusing more than *limit* bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The upload is larger than the limit of {limit} bytes")
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix="upload-")
    path = Path(name)
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(
                        f"The upload is larger than the limit of {limit} bytes"
                    )
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise UsageError("The upload is empty: send the table file as the request body")
    return path


def build_router() -> APIRouter:
    router = APIRouter()

    @router.get("/tables")
    async def list_tables(
        request: Request, user: AuthenticatedUser = Depends(_read)
    ) -> JSONResponse:
        """The tables you can read (yours, your groups', shared with you) and your usage."""
        service = _service(request)
        caller = _caller(user)
        tables = await asyncio.to_thread(service.visible, caller)
        return JSONResponse(
            {
                "user": user.name,
                "tables": [t.to_json() for t in tables],
                "usage": service.usage(caller),
            }
        )

    @router.get("/tables/{name}")
    async def describe(
        request: Request, name: str, user: AuthenticatedUser = Depends(_read)
    ) -> JSONResponse:
        service, caller, table_name = _named(request, name, user)
        return JSONResponse(service.readable(table_name, caller).to_json())

    @router.put("/tables/{name}")
    async def upload(
        request: Request,
        name: str,
        overwrite: str | None = Query(None),
        user: AuthenticatedUser = Depends(_write),
    ) -> JSONResponse:
        """Create a table from the body: a Parquet, VOTable or CSV file (format sniffed)."""
        service, caller, table_name, replace = _writable(request, name, user, overwrite)
        incoming = service.settings.services_state_dir / "mydb" / "incoming"
        path = await _receive(request, incoming, service.settings.mydb.max_upload_bytes)
        try:
            return await _create_from_file(
                service, path, table_name, caller, overwrite=replace, source="upload:{format}"
            )
        finally:
            path.unlink(missing_ok=True)

    @router.post("/tables/{name}/from-job")
    async def from_job(
        request: Request,
        name: str,
        job: str = Query(..., description="The id of one of your completed async TAP jobs."),
        overwrite: str | None = Query(None),
        user: AuthenticatedUser = Depends(_write),
    ) -> JSONResponse:
        """Create a table from the result of one of your completed async TAP jobs."""
        service, caller, table_name, replace = _writable(request, name, user, overwrite)
        tap = request.app.state.context.state.get("tap")
        if tap is None or tap.jobs is None:
            raise ServiceUnavailableError("The TAP service is not available")
        found = tap.jobs.get(user.name, job)  # NotFoundError for another user's job
        if str(found.phase) != "COMPLETED":
            raise UsageError(f"Job {job!r} is {found.phase}, not COMPLETED")
        result = tap.jobs.job_dir(found.id) / "result"
        if not result.exists():
            raise NotFoundError(f"Job {job!r} has no result (it may have expired)")
        return await _create_from_file(
            service, result, table_name, caller, overwrite=replace, source=f"job:{found.id}"
        )

    @router.delete("/tables/{name}")
    async def drop(
        request: Request, name: str, user: AuthenticatedUser = Depends(_write)
    ) -> JSONResponse:
        service, caller, table_name = _named(request, name, user)
        await asyncio.to_thread(service.drop, table_name, caller)
        return JSONResponse({"dropped": table_name.qualified})

    @router.put("/tables/{name}/shares/{group}")
    async def share(
        request: Request, name: str, group: str, user: AuthenticatedUser = Depends(_write)
    ) -> JSONResponse:
        """Let members of *group* read the table (read-only)."""
        service, caller, table_name = _named(request, name, user)
        service.share(table_name, group, caller)
        return JSONResponse(service.readable(table_name, caller).to_json())

    @router.delete("/tables/{name}/shares/{group}")
    async def unshare(
        request: Request, name: str, group: str, user: AuthenticatedUser = Depends(_write)
    ) -> JSONResponse:
        service, caller, table_name = _named(request, name, user)
        service.share(table_name, group, caller, revoke=True)
        return JSONResponse(service.readable(table_name, caller).to_json())

    return router
