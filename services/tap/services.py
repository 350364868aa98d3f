"""TAP logic between the HTTP handlers and the catalog backend.

A query goes: DALI parameters -> :class:`TapRequest` (checked) -> ADQL translation against
TAP_SCHEMA (+ uploads) -> backend execution (first batch fetched, so errors come back as
errors) -> a streamed writer. Sync queries stream to the client; async jobs stream to a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from sciplat.config import Settings
from sciplat.services.common.errors import ServiceError, UsageError
from sciplat.services.common.params import DaliParams
from sciplat.services.common.uws.models import Job, JobResult
from sciplat.services.common.uws.service import CancelToken
from sciplat.services.tap.adql import Translation, translate
from sciplat.services.tap.history import HistoryEntry, QueryHistory
from sciplat.services.tap.quota import QueryQuota
from sciplat.services.tap.schema import TapSchema
from sciplat.services.tap.storage.base import Catalog
from sciplat.services.tap.upload import UploadSpec, parse_upload_param, read_upload
from sciplat.services.tap.votable.fields import fields_for
from sciplat.services.tap.votable.formats import OutputFormat, output_format
from sciplat.services.tap.votable.stream import ResultStream, RowLimiter, prefetched

__all__ = ["JOB_PARAMETERS", "TapRequest", "TapService", "parse_request"]

log = logging.getLogger("sciplat.services.tap")

#: Parameters a TAP job keeps (lower-case); others are ignored.
#: File in a job's directory with its owner's groups at submission.
GROUPS_FILE = "owner-groups.json"

JOB_PARAMETERS = (
    "request",
    "lang",
    "query",
    "maxrec",
    "responseformat",
    "format",
    "upload",
    "dest_table",
)
_LANGS = {"adql", "adql-2.0", "adql-2.1"}
#: Sync results smaller than this are answered whole rather than streamed (bytes).
INLINE_BYTES = 1 << 20


@dataclass(frozen=True)
class TapRequest:
    query: str
    maxrec: int
    format: OutputFormat
    uploads: list[UploadSpec] = field(default_factory=list)
    #: Who asks (their MyDB tables are visible to the query), and their groups.
    owner: str = ""
    groups: tuple[str, ...] = ()
    #: DEST_TABLE: the MyDB table an async job's result is also stored in (services/mydb).
    dest_table: str | None = None


def parse_request(params: DaliParams, settings: Settings) -> TapRequest:
    """Check a TAP query request's parameters (TAP 1.1 §2.3)."""
    request = params.single("request")
    if request is not None and request.strip().lower() != "doquery":
        raise UsageError(f"REQUEST must be doQuery, not {request!r}")
    lang = params.single("lang")
    if lang is not None and lang.strip().lower() not in _LANGS:
        raise UsageError(f"LANG {lang!r} is not supported; use ADQL")
    query = params.single("query")
    if query is None or not query.strip():
        raise UsageError("QUERY is required")
    config = settings.catalog
    maxrec_text = params.single("maxrec")
    dest_table = params.single("dest_table")
    if maxrec_text is None:
        # A DEST_TABLE job stores the whole result, up to the hard limit.
        maxrec = config.max_rows if dest_table else min(config.default_maxrec, config.max_rows)
    else:
        try:
            maxrec = int(maxrec_text.strip())
        except ValueError as exc:
            raise UsageError(f"MAXREC must be a non-negative integer, not {maxrec_text!r}") from exc
        if maxrec < 0:
            raise UsageError(f"MAXREC must be a non-negative integer, not {maxrec_text!r}")
        if maxrec > config.max_rows:
            raise UsageError(
                f"MAXREC {maxrec} is above this service's hard limit of {config.max_rows} rows"
            )
    fmt = output_format(params.single("responseformat") or params.single("format"))
    uploads = parse_upload_param(params.getlist("upload"))
    return TapRequest(
        query=query, maxrec=maxrec, format=fmt, uploads=uploads, dest_table=dest_table
    )


class TapService:
    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        *,
        history: QueryHistory,
        quota: QueryQuota,
        public_url: str,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.history = history
        self.quota = quota
        self.public_url = public_url
        self._schema = catalog.load_schema()
        #: Groups of each job's owner at submission (their quota applies when it runs).
        self.job_groups: dict[str, tuple[str, ...]] = {}
        #: MyDB's hook (``sciplat.services.mydb.tap.UserTables``), set by the mydb plugin.
        self.user_tables = None
        # Clients repeat queries (paging, polling, dashboards): translations are pure functions
        # of (query, maxrec) for a given TAP_SCHEMA, so keep the recent ones.
        self._translate_cached = functools.lru_cache(maxsize=512)(self._translate)

    @property
    def schema(self) -> TapSchema:
        """The published tables; loaded again when the catalog was replaced (a new release)."""
        if self.catalog.refresh():
            self._schema = self.catalog.load_schema()
            self._translate_cached.cache_clear()
        return self._schema

    def schema_for(self, owner: str, groups: tuple[str, ...]) -> TapSchema:
        """TAP_SCHEMA as *owner* sees it: the published tables plus their MyDB tables."""
        if self.user_tables is None:
            return self.schema
        return self.user_tables.schema_for(self.schema, owner, groups)

    def _translate(self, query: str, maxrec: int) -> Translation:
        return translate(query, self._schema, self.catalog.target(), maxrec=maxrec)

    # query execution ---------------------------------------------------------------------------
    def open(
        self,
        request: TapRequest,
        uploads: dict[str, bytes],
        *,
        timeout: float | None,
        token: CancelToken | None = None,
    ) -> ResultStream:
        """Translate and start *request*; blocking (call from a worker thread)."""
        schema = self.schema
        tables: dict[str, pa.Table] = {}
        physical: dict[str, str] = {}
        if request.uploads:
            metas = []
            for spec in request.uploads:
                if spec.table.lower() not in uploads:
                    raise UsageError(f"Upload table {spec.table!r} has no content")
                meta, table = read_upload(spec.table, uploads[spec.table.lower()])
                metas.append(meta)
                name = f"tap_upload_{spec.table.lower()}"
                tables[name] = table
                physical[spec.table] = name
            schema = schema.with_tables(metas)
        mine = None
        if self.user_tables is not None:
            mine = self.user_tables.for_caller(schema, request.owner, request.groups)
        if mine is not None:
            target = mine.wrap(self.catalog.target(physical))
            translation = translate(request.query, mine.schema, target, maxrec=request.maxrec)
            tables.update(mine.sources(translation))
        elif request.uploads:
            translation = translate(
                request.query, schema, self.catalog.target(physical), maxrec=request.maxrec
            )
        else:
            translation = self._translate_cached(request.query, request.maxrec)
        result = self.catalog.execute(translation.sql, uploads=tables, timeout=timeout)
        if token is not None:
            token.on_cancel(result.cancel)
        try:
            fields = fields_for(translation.fields, result.schema)
        except Exception:
            result.close()
            raise
        return ResultStream(
            fields=fields,
            rows=RowLimiter(result.batches, request.maxrec),
            infos={"QUERY": request.query},
            schema=result.schema,
        )

    def record(
        self,
        user: str,
        mode: str,
        request_query: str,
        started: float,
        *,
        status: str,
        rows: int | None = None,
        fmt: str | None = None,
        job_id: str | None = None,
        message: str | None = None,
    ) -> None:
        try:
            self.history.record(
                HistoryEntry(
                    owner=user,
                    time=time.time(),
                    mode=mode,
                    query=request_query,
                    status=status,
                    rows=rows,
                    duration=round(time.time() - started, 6),
                    format=fmt,
                    job_id=job_id,
                    message=message,
                )
            )
        except Exception:
            log.exception("could not record a query in the history")

    def sync_body(
        self,
        stream: ResultStream,
        request: TapRequest,
        user: str,
        started: float,
    ) -> Iterator[bytes]:
        """The response body, streamed; releases the user's slot and logs the query when done.

        The slot is also released if the body is never read (the client went away before the
        response started): a generator that never ran does not run its ``finally``.
        """
        return prefetched(self._body(stream, request, user, started))

    def sync_response(
        self,
        stream: ResultStream,
        request: TapRequest,
        user: str,
        started: float,
    ) -> bytes | Iterator[bytes]:
        """The whole body when it is small (under :data:`INLINE_BYTES`): written right here
        (call from a worker thread), so a cone search pays for no streaming thread and no
        per-chunk hand-over; otherwise what is written so far followed by the stream of the
        rest, as :meth:`sync_body`."""
        chunks = self._body(stream, request, user, started)
        head: list[bytes] = []
        size = 0
        for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size >= INLINE_BYTES:
                return itertools.chain(head, prefetched(chunks))
        return b"".join(head)

    def _body(
        self, stream: ResultStream, request: TapRequest, user: str, started: float
    ) -> Iterator[bytes]:
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self.quota.release(user)

        def body() -> Iterator[bytes]:
            status = "ERROR"
            try:
                yield from request.format.write(stream)
                status = (
                    "ERROR" if stream.rows.error else ("OVERFLOW" if stream.rows.overflow else "OK")
                )
            finally:
                release()
                self._record_sync(user, request, started, status, stream)

        generator = body()
        weakref.finalize(generator, release)
        return generator

    def _record_sync(
        self, user: str, request: TapRequest, started: float, status: str, stream: ResultStream
    ) -> None:
        self.record(
            user,
            "sync",
            request.query,
            started,
            status=status,
            rows=stream.rows.rows,
            fmt=request.format.name,
            message=stream.rows.error,
        )

    def remember_groups(self, job_id: str, groups: tuple[str, ...], directory: Path) -> None:
        """Keep the owner's groups at submission with the job (they survive a restart)."""
        self.job_groups[job_id] = groups
        directory.mkdir(parents=True, exist_ok=True)
        (directory / GROUPS_FILE).write_text(json.dumps(list(groups)))

    def groups_of(self, job_id: str, directory: Path) -> tuple[str, ...]:
        """The groups the job's owner had when the job was created (none if unknown)."""
        if job_id not in self.job_groups:
            try:
                saved = json.loads((directory / GROUPS_FILE).read_text())
            except (OSError, ValueError):
                return ()
            self.job_groups[job_id] = tuple(str(g) for g in saved)
        return self.job_groups[job_id]

    # async jobs ----------------------------------------------------------------------------------
    async def run_job(self, job: Job, directory: Path, token: CancelToken) -> list[JobResult]:
        started = time.time()
        record = functools.partial(
            self.record, job.owner, "async", job.parameter("query") or "", started, job_id=job.id
        )
        try:
            request = dataclasses.replace(
                parse_request(DaliParams(job.parameters), self.settings),
                owner=job.owner,
                groups=self.groups_of(job.id, directory),
            )
            uploads = {
                path.name[len("upload-") :].lower(): path.read_bytes()
                for path in directory.glob("upload-*")
            }
            size, stream = await asyncio.to_thread(
                self._write_job, request, uploads, directory / "result", token
            )
            if stream.rows.error:
                raise UsageError(stream.rows.error)
        except ServiceError as exc:
            record(status="ERROR", message=exc.message)
            raise
        record(
            status="OVERFLOW" if stream.rows.overflow else "OK",
            rows=stream.rows.rows,
            fmt=request.format.name,
        )
        href = f"{self.public_url}/async/{job.id}/results/result"
        return [JobResult(id="result", href=href, mime_type=request.format.media_type, size=size)]

    def _write_job(
        self, request: TapRequest, uploads: dict[str, bytes], path: Path, token: CancelToken
    ) -> tuple[int, ResultStream]:
        stream = self.open(request, uploads, timeout=None, token=token)
        size = 0
        with self._dest_table(request, stream), open(path, "wb") as out:
            for chunk in request.format.write(stream):
                if token.cancelled:
                    raise UsageError("The job was aborted")
                out.write(chunk)
                size += len(chunk)
        return size, stream

    def _dest_table(self, request: TapRequest, stream: ResultStream) -> Any:
        """DEST_TABLE: MyDB stores the rows as they are written (nothing if the job fails)."""
        if not request.dest_table:
            return contextlib.nullcontext()
        if self.user_tables is None:
            raise UsageError("DEST_TABLE needs MyDB, which this service does not run")
        return self.user_tables.capture(request, stream)
