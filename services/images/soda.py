"""SODA 1.0 cutouts: parameters and the ``/soda`` routes (``sync``, and ``async`` jobs on the
shared UWS machinery, with results kept under the API service's state directory).

``ID`` (repeatable) names datasets by their publisher DID; ``CIRCLE``, ``POLYGON`` and ``POS``
(repeatable) are the regions; every (ID, region) pair becomes one cutout in the output file.
``BAND``, ``TIME`` and ``POL`` filter: the images are single-band, single-epoch, Stokes I, so a
filter either contains the dataset (no effect) or misses it (an error naming the dataset).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import UsageError
from sciplat.services.common.params import DaliParams
from sciplat.services.common.uws.handlers import UWSRoutes, install_uws_routes
from sciplat.services.common.uws.models import Job, JobResult
from sciplat.services.common.uws.service import CancelToken, UWSService
from sciplat.services.common.uws.store import JobStore, open_job_store
from sciplat.services.common.votable import VOTABLE_MEDIA_TYPE, error_votable
from sciplat.services.images.backend import (
    IMAGE_SCOPE,
    ImageBackend,
    ImageRequest,
    get_backend,
    image_request,
    image_router,
    shutdown_backend,
)
from sciplat.services.images.intervals import parse_band, parse_pol, parse_time
from sciplat.services.images.regions import (
    SkyRegion,
    parse_circle,
    parse_polygon,
    parse_pos,
)
from sciplat.services.images.vosi import Capability
from sciplat.services.plugin import AppContext, ServicePlugin

__all__ = ["SodaJobs", "SodaParameters", "parse_soda", "plugin", "run_cutout"]

FITS = "application/fits"
MAX_IDS = 50
#: The parameters a SODA job keeps (everything else is UWS control or ignored).
SODA_PARAMS = ("ID", "CIRCLE", "POLYGON", "POS", "BAND", "TIME", "POL")
JOB_RETENTION = 2 * 86400


@dataclass(frozen=True)
class SodaParameters:
    """A checked SODA request."""

    ids: list[str]
    regions: list[tuple[str, SkyRegion]]  # (label as given, region)
    band: list[tuple[float, float]]
    time: list[tuple[float, float]]
    pol: list[str]


def parse_soda(params: DaliParams) -> SodaParameters:
    ids = [i.strip() for i in params.getlist("ID") if i.strip()]
    if not ids:
        raise UsageError("ID is required (the dataset's obs_publisher_did)")
    if len(ids) > MAX_IDS:
        raise UsageError(f"{len(ids)} IDs given; at most {MAX_IDS} per request")
    regions: list[tuple[str, SkyRegion]] = []
    for value in params.getlist("CIRCLE"):
        regions.append((f"CIRCLE {value.strip()}", parse_circle(value)))
    for value in params.getlist("POLYGON"):
        regions.append((f"POLYGON {value.strip()}", parse_polygon(value)))
    for value in params.getlist("POS"):
        regions.append((f"POS {value.strip()}", parse_pos(value)))
    if not regions:
        raise UsageError("A cutout needs a region: CIRCLE, POLYGON or POS")
    return SodaParameters(
        ids=ids,
        regions=regions,
        band=[parse_band(v) for v in params.getlist("BAND")],
        time=[parse_time(v) for v in params.getlist("TIME")],
        pol=[parse_pol(v) for v in params.getlist("POL")],
    )


def _check_filters(backend: ImageBackend, did: str, request: SodaParameters) -> None:
    row = backend.obscore.by_did(did)
    if row is None:
        return  # a Butler dataset outside ObsCore (e.g. a calibration frame): no axes to check
    for name, intervals, lo_col, hi_col in (
        ("BAND", request.band, "em_min", "em_max"),
        ("TIME", request.time, "t_min", "t_max"),
    ):
        if not intervals or row[lo_col] is None or row[hi_col] is None:
            continue
        lo, hi = float(row[lo_col]), float(row[hi_col])
        if not any(a <= hi and b >= lo for a, b in intervals):
            raise UsageError(
                f"{name} {intervals} does not overlap dataset {did} ({name} {lo:g} {hi:g})"
            )
    if request.pol:
        states = row["pol_states"] or "/I/"  # unpolarised images are total intensity
        if not any(f"/{p}/" in states for p in request.pol):
            raise UsageError(f"POL {request.pol} does not match dataset {did} (states {states})")


def run_cutout(backend: ImageBackend, request: SodaParameters, out: BinaryIO) -> int:
    """Write the FITS file for *request* to *out* (blocking: run it in a thread or a job)."""
    from sciplat.services.images.cutout import CutoutRequest, write_cutouts

    cutouts = []
    for did in request.ids:
        dataset = backend.repo.resolve(did)
        _check_filters(backend, did, request)
        cutouts.extend(CutoutRequest(dataset, region, label) for label, region in request.regions)
    return write_cutouts(cutouts, backend.limits, out)


def _stream(spool: BinaryIO) -> Iterator[bytes]:
    try:
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            yield chunk
    finally:
        spool.close()


def _check_values(params: DaliParams) -> list[tuple[str, str]]:
    """Validate each SODA value of a job (completeness is checked when the job runs)."""
    checks = {
        "CIRCLE": parse_circle,
        "POLYGON": parse_polygon,
        "POS": parse_pos,
        "BAND": parse_band,
        "TIME": parse_time,
        "POL": parse_pol,
    }
    kept = []
    for name in SODA_PARAMS:
        for value in params.getlist(name):
            if name in checks:
                checks[name](value)
            kept.append((name, value))
    return kept


class SodaJobs:
    """SODA async: a UWS service whose runner writes the cutout file as the job's result."""

    def __init__(
        self,
        backend: ImageBackend,
        state_dir: Path,
        store: JobStore | None = None,
        heartbeat: float = 10.0,
    ) -> None:
        self.backend = backend
        self.store = store or JobStore(state_dir / "jobs.sqlite3", service="soda")
        self.uws = UWSService(
            self.store,
            runner=self.run,
            results_dir=state_dir / "results",
            default_duration=600,
            max_duration=3600,
            retention=JOB_RETENTION,
            heartbeat=heartbeat,
        )

    async def run(self, job: Job, directory: Path, token: CancelToken) -> list[JobResult]:
        request = parse_soda(DaliParams(job.parameters))
        with open(directory / "cutout", "wb") as out:
            size = await asyncio.to_thread(run_cutout, self.backend, request, out)
        href = f"{self.backend.url('soda', 'async')}/{job.id}/results/cutout"
        return [JobResult(id="cutout", href=href, mime_type=FITS, size=size)]


def _jobs(request: Request) -> UWSService:
    return request.app.state.context.state["soda"].uws


async def _job_parameters(
    request: Request, params: DaliParams, job_id: str, user: AuthenticatedUser
) -> list[tuple[str, str]]:
    return _check_values(params)


def _router() -> APIRouter:
    router = image_router(
        "soda",
        [
            Capability("ivo://ivoa.net/std/SODA#sync-1.0", "sync", version="1.0"),
            Capability("ivo://ivoa.net/std/SODA#async-1.0", "async", version="1.0"),
        ],
    )
    install_uws_routes(
        router,
        "/async",
        UWSRoutes(
            service=_jobs,
            user=require_scope(IMAGE_SCOPE),
            job_parameters=_job_parameters,
            error_document=lambda message: Response(
                error_votable(message), media_type=VOTABLE_MEDIA_TYPE
            ),
            base_url=lambda request: get_backend(request.app.state.context).url("soda", "async"),
        ),
    )

    @router.api_route("/sync", methods=["GET", "POST"])
    async def sync(call: ImageRequest = Depends(image_request)) -> Response:
        """SODA sync: the cutouts, as one FITS file."""
        request, backend = parse_soda(call.params), call.backend
        # Spooled to disk past 16 MiB, then streamed: large cutouts never sit in memory.
        spool = tempfile.SpooledTemporaryFile(max_size=16 * 2**20)  # noqa: SIM115 - closed by _stream
        try:
            size = await run_in_threadpool(run_cutout, backend, request, spool)
        except BaseException:
            spool.close()
            raise
        return StreamingResponse(
            _stream(spool),
            media_type=FITS,
            headers={
                "Content-Disposition": 'inline; filename="cutout.fits"',
                "Content-Length": str(size),
            },
        )

    return router


async def _startup(context: AppContext) -> None:
    settings = context.settings
    state_dir = settings.services_state_dir / "soda"
    store = await asyncio.to_thread(open_job_store, settings, state_dir, "soda")
    jobs = SodaJobs(get_backend(context), state_dir, store, heartbeat=settings.jobs.heartbeat)
    await jobs.uws.startup()
    context.state["soda"] = jobs


async def _shutdown(context: AppContext) -> None:
    jobs: SodaJobs | None = context.state.pop("soda", None)
    if jobs is not None:
        await jobs.uws.shutdown()
        jobs.store.close()
    await shutdown_backend(context)


plugin = ServicePlugin(name="soda", router_factory=_router, startup=_startup, shutdown=_shutdown)
