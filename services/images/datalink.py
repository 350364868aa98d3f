"""DataLink 1.1 ``{links}`` for every ObsCore dataset, and the signed file downloads it hands out.

For each ID: ``#this`` (the FITS file, streamed from the Butler datastore through a short-lived
signed URL), ``#auxiliary`` (the MASK and VARIANCE planes on their own, where the file has
them), ``#bias``/``#flat`` (the calibration frames that apply), ``#progenitor`` (the raw an
image was processed from; for coadds, the visit images that overlap it in the same band) and
``#cutout`` (the SODA service, described in the same document). Unknown IDs get a row with an
``error_message``, as the standard asks.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from sciplat.services.common.errors import NotFoundError, UsageError
from sciplat.services.images import fitsfiles
from sciplat.services.images.backend import (
    ImageBackend,
    ImageRequest,
    backend_dependency,
    image_plugin,
    image_request,
    image_router,
)
from sciplat.services.images.butler import DatasetInfo, did_for
from sciplat.services.images.sia import VOTABLE, datalink_url
from sciplat.services.images.vosi import Capability
from sciplat.services.images.votable import Field, votable_document

__all__ = ["Link", "links_for", "plugin", "service_descriptor"]

FITS = "application/fits"
DATALINK = "application/x-votable+xml;content=datalink"
MAX_IDS = 100
MAX_PROGENITORS = 500

FIELDS = [
    Field("ID", "char", ucd="meta.id;meta.main", id="dl_id"),
    Field("access_url", "char", ucd="meta.ref.url"),
    Field("service_def", "char", ucd="meta.ref"),
    Field("error_message", "char", ucd="meta.code.error"),
    Field("semantics", "char", ucd="meta.code"),
    Field("description", "char", ucd="meta.note"),
    Field("content_type", "char", ucd="meta.code.mime"),
    Field("content_length", "long", ucd="phys.size;meta.file", unit="byte"),
]


@dataclass(frozen=True)
class Link:
    """One row of a links response."""

    id: str
    semantics: str
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None

    def row(self) -> tuple[object, ...]:
        return (
            self.id,
            self.access_url,
            self.service_def,
            self.error_message,
            self.semantics,
            self.description,
            self.content_type,
            self.content_length,
        )


def download_url(backend: ImageBackend, dataset: DatasetInfo, plane: str, user: str) -> str:
    query = urlencode(backend.signer.sign(dataset.did, plane, user))
    return f"{backend.url('datalink', 'files')}/{dataset.id}?{query}"


def _file_link(
    backend: ImageBackend,
    did: str,
    semantics: str,
    dataset: DatasetInfo,
    user: str,
    description: str,
    plane: str = "file",
    size: int | None = None,
) -> Link:
    """A signed download of *dataset* (the whole file, or one *plane* of *size* bytes)."""
    return Link(
        id=did,
        semantics=semantics,
        access_url=download_url(backend, dataset, plane, user),
        description=description,
        content_type=FITS,
        content_length=dataset.size if plane == "file" else size,
    )


def links_for(backend: ImageBackend, did: str, user: str) -> list[Link]:
    """Every link of one dataset (or one error row)."""
    try:
        dataset = backend.repo.resolve(did)
    except (UsageError, NotFoundError) as exc:
        return [Link(id=did, semantics="#this", error_message=f"NotFoundFault: {exc.message}")]
    what = f"{dataset.dataset_type} {_describe(dataset.data_id)}"
    links = [_file_link(backend, did, "#this", dataset, user, f"The FITS file of {what}")]
    try:
        layout = fitsfiles.layout_of(dataset.location)
    except (OSError, ValueError):
        layout = None
    if layout is not None:
        for plane, text in (("MASK", "mask plane"), ("VARIANCE", "variance plane")):
            part = layout.planes.get(plane)
            if part is not None:
                description = f"The {text} of {what}"
                size = part.download_size
                links.append(
                    _file_link(
                        backend, did, "#auxiliary", dataset, user, description, plane.lower(), size
                    )
                )
        if layout.wcs is not None:
            links.append(
                Link(
                    id=did,
                    semantics="#cutout",
                    service_def="cutout",
                    description=f"Cutouts of {what} (SODA)",
                    content_type=FITS,
                )
            )
    for semantics, calib in backend.repo.calibrations(dataset):
        description = f"{calib.dataset_type} {_describe(calib.data_id)} ({calib.run})"
        links.append(_file_link(backend, did, semantics, calib, user, description))
    for raw in backend.repo.raws(dataset):
        description = f"The raw exposure {_describe(raw.data_id)}"
        links.append(_file_link(backend, did, "#progenitor", raw, user, description))
    links.extend(_coadd_inputs(backend, did))
    return links


def _coadd_inputs(backend: ImageBackend, did: str) -> list[Link]:
    """For a coadd (calibration level 3), the level-2 images overlapping it in its band."""
    row = backend.obscore.by_did(did)
    if row is None or row["calib_level"] != 3 or row.region is None:
        return []
    _, rows = backend.obscore.snapshot()
    links = []
    for other in rows:
        if other["calib_level"] != 2 or other.region is None:
            continue
        if not _same_band(row["em_min"], row["em_max"], other["em_min"], other["em_max"]):
            continue
        if other.region.overlaps(row.region) is False:
            continue
        other_did = str(other["obs_publisher_did"])
        links.append(
            Link(
                id=did,
                semantics="#progenitor",
                access_url=datalink_url(backend, other_did),
                description=f"Input visit image {other['obs_id'] or other_did}",
                content_type=DATALINK,
            )
        )
        if len(links) >= MAX_PROGENITORS:
            break
    return links


def _same_band(a_lo: object, a_hi: object, b_lo: object, b_hi: object) -> bool:
    try:
        values = [float(v) for v in (a_lo, a_hi, b_lo, b_hi)]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if any(math.isnan(v) for v in values):
        return False
    return math.isclose(values[0], values[2], rel_tol=1e-6) and math.isclose(
        values[1], values[3], rel_tol=1e-6
    )


def _describe(data_id: dict[str, object]) -> str:
    keys = ("instrument", "visit", "exposure", "detector", "band", "tract", "patch")
    return " ".join(f"{k}={data_id[k]}" for k in keys if k in data_id)


def service_descriptor(backend: ImageBackend) -> str:
    """The SODA sync service descriptor RESOURCE (``service_def="cutout"``)."""
    soda = backend.url("soda", "sync")
    return (
        '<RESOURCE type="meta" utype="adhoc:service" ID="cutout" name="cutout">\n'
        "<DESCRIPTION>SODA cutouts: a FITS file with IMAGE, MASK and VARIANCE of each region"
        "</DESCRIPTION>\n"
        '<PARAM name="standardID" datatype="char" arraysize="*" '
        'value="ivo://ivoa.net/std/SODA#sync-1.0"/>\n'
        f'<PARAM name="accessURL" datatype="char" arraysize="*" value="{soda}"/>\n'
        '<GROUP name="inputParams">\n'
        '<PARAM name="ID" datatype="char" arraysize="*" ucd="meta.id;meta.dataset" '
        'ref="dl_id" value=""/>\n'
        '<PARAM name="CIRCLE" datatype="double" arraysize="3" xtype="circle" unit="deg" '
        'ucd="obs.field" value=""><DESCRIPTION>ra dec radius (ICRS degrees)</DESCRIPTION>'
        "</PARAM>\n"
        '<PARAM name="POLYGON" datatype="double" arraysize="*" xtype="polygon" unit="deg" '
        'ucd="obs.field" value=""><DESCRIPTION>ra1 dec1 ra2 dec2 ... (ICRS degrees)'
        "</DESCRIPTION></PARAM>\n"
        '<PARAM name="BAND" datatype="double" arraysize="2" xtype="interval" unit="m" '
        'ucd="em.wl;stat.interval" value=""/>\n'
        '<PARAM name="TIME" datatype="double" arraysize="2" xtype="interval" unit="d" '
        'ucd="time.interval;obs.exposure" value=""/>\n'
        '<PARAM name="POL" datatype="char" arraysize="*" ucd="meta.code;phys.polarization" '
        'value=""/>\n'
        "</GROUP>\n</RESOURCE>\n"
    )


def _links_response(backend: ImageBackend, ids: list[str], user: str) -> StreamingResponse:
    rows = [link.row() for did in ids for link in links_for(backend, did, user)]
    document = votable_document(
        FIELDS,
        rows,
        infos={"QUERY_STATUS": "OK", "standardID": "ivo://ivoa.net/std/DataLink#links-1.1"},
        extra_resources=[service_descriptor(backend)],
    )
    return StreamingResponse(document, media_type=f"{VOTABLE};content=datalink")


def _router() -> APIRouter:
    router = image_router(
        "datalink",
        [Capability("ivo://ivoa.net/std/DataLink#links-1.1", "links", version="1.1")],
    )

    @router.api_route("/links", methods=["GET", "POST"])
    async def links(call: ImageRequest = Depends(image_request)) -> StreamingResponse:
        """DataLink {links}: the files, planes, calibrations, progenitors and cutout service."""
        ids = [i.strip() for i in call.params.getlist("ID") if i.strip()]
        if not ids:
            raise UsageError("ID is required (the dataset's obs_publisher_did)")
        if len(ids) > MAX_IDS:
            raise UsageError(f"{len(ids)} IDs given; at most {MAX_IDS} per request")
        fmt = call.params.single("RESPONSEFORMAT")
        if fmt is not None and not fmt.lower().startswith(("votable", "application/x-votable")):
            raise UsageError(f"RESPONSEFORMAT {fmt!r} is not supported; use votable")
        call.backend.obscore.snapshot()  # 503 now rather than per-row errors if the data is missing
        return await run_in_threadpool(_links_response, call.backend, ids, call.user.name)

    @router.get("/files/{dataset_id}")
    async def files(
        dataset_id: str, request: Request, backend: ImageBackend = Depends(backend_dependency)
    ) -> Response:
        """A signed download: the whole file or one plane, streamed."""
        q = request.query_params
        try:
            key = uuid.UUID(dataset_id)
        except ValueError:
            raise NotFoundError(f"Unknown dataset {dataset_id!r}") from None
        did = did_for(key)
        plane = q.get("plane", "file")
        backend.signer.verify(
            did, plane, q.get("user", ""), q.get("expires", ""), q.get("signature", "")
        )
        dataset = await run_in_threadpool(backend.repo.resolve, did)
        name = f"{dataset.dataset_type}_{key}"
        if plane == "file":
            body = fitsfiles.stream_file(dataset.location)
            length = dataset.location.current_size()
        else:
            layout = await run_in_threadpool(fitsfiles.layout_of, dataset.location)
            part = layout.planes.get(plane.upper())
            if part is None:
                raise NotFoundError(f"Dataset {did} has no {plane!r} plane")
            body = fitsfiles.stream_plane(dataset.location, part, cards={"DATASET": did})
            length = part.download_size
            name += f"_{plane}"
        headers = {
            "Content-Length": str(length),
            "Content-Disposition": f'attachment; filename="{quote(name)}.fits"',
        }
        return StreamingResponse(body, media_type=FITS, headers=headers)

    return router


plugin = image_plugin("datalink", _router)
