"""The portal's pages and JSON API (``/api/...``): thin translations to :class:`PortalService`."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from sciplat.services.common.auth import AuthenticatedUser
from sciplat.services.common.errors import NotFoundError, UsageError
from sciplat.services.portal import plots
from sciplat.services.portal.auth import (
    SESSION_COOKIE,
    STATE_COOKIE,
    api_user,
    page_user,
)
from sciplat.services.portal.channels import DEFAULT_NONCE
from sciplat.services.portal.results import Filter
from sciplat.services.portal.service import readable_name
from sciplat.services.portal.workspace import clean_path

__all__ = ["build_router"]

STATIC = Path(__file__).parent / "static"
#: Largest file the portal uploads to a workspace (bigger ones: WebDAV directly).
MAX_UPLOAD = 256 * 2**20


class QueryBody(BaseModel):
    query: str
    maxrec: int | None = Field(None, ge=0)


class PageBody(BaseModel):
    offset: int = 0
    limit: int = 100
    sort: str | None = None
    descending: bool = False
    filters: list[dict[str, Any]] = Field(default_factory=list)


class StatsBody(BaseModel):
    column: str
    filters: list[dict[str, Any]] = Field(default_factory=list)


class PlotBody(BaseModel):
    type: str = "scatter"
    x: str
    y: str | None = None
    bins: int = 50
    width: int = 600
    height: int = 400
    filters: list[dict[str, Any]] = Field(default_factory=list)
    x_range: list[float] | None = None
    y_range: list[float] | None = None


class BokehBody(BaseModel):
    kind: str = "scatter"
    x: str
    y: str | None = None
    by: str | None = None
    bins: int = 50
    width: int = 640
    height: int = 380
    filters: list[dict[str, Any]] = Field(default_factory=list)
    x_range: list[float] | None = Field(None, min_length=2, max_length=2)
    y_range: list[float] | None = Field(None, min_length=2, max_length=2)


class SaveBody(BaseModel):
    format: str = "parquet"
    name: str
    folder: str = "portal"


class WorkspaceOpenBody(BaseModel):
    path: str


class SiaBody(BaseModel):
    ra: float
    dec: float
    radius: float = Field(0.1, gt=0, le=10)
    band: str | None = None
    time: list[float] | None = None


class ImageUrlBody(BaseModel):
    url: str
    title: str | None = None


class CutoutBody(BaseModel):
    dataset_id: str
    ra: float
    dec: float
    radius: float = 0.01
    #: a readable name of the image (the viewer's title), e.g. its obs_id and band
    of: str | None = Field(None, max_length=200)


class OverlayBody(BaseModel):
    result: str
    filters: list[dict[str, Any]] = Field(default_factory=list)


class NotebookBody(BaseModel):
    job_id: str


def _filters(specs: list[dict[str, Any]]) -> list[Filter]:
    return [Filter.parse(s) for s in specs]


def _svc(request: Request) -> Any:
    return request.app.state.portal.service


def sky_columns(columns: list[dict[str, Any]]) -> tuple[str, str]:
    """The RA/Dec columns of a result (by UCD, then by the usual names)."""
    names = [c["name"] for c in columns]
    by_ucd = {c.get("ucd"): c["name"] for c in columns if c.get("ucd")}
    ra = by_ucd.get("pos.eq.ra;meta.main") or by_ucd.get("pos.eq.ra")
    dec = by_ucd.get("pos.eq.dec;meta.main") or by_ucd.get("pos.eq.dec")
    for a, b in (("coord_ra", "coord_dec"), ("ra", "dec"), ("s_ra", "s_dec"), ("RA", "DEC")):
        if not ra and a in names and b in names:
            ra, dec = a, b
    if not ra or not dec:
        raise UsageError("This result has no RA/Dec columns to place on the sky")
    return ra, dec


def build_router(prefix: str) -> APIRouter:
    router = APIRouter()

    # pages and login -------------------------------------------------------------------------
    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, user: AuthenticatedUser = Depends(page_user)) -> Response:
        html = (STATIC / "index.html").read_text().replace("{{PREFIX}}", prefix)
        return HTMLResponse(html)

    @router.get("/oauth_callback")
    async def oauth_callback(request: Request) -> Response:
        ctx = request.app.state.portal
        code, state = request.query_params.get("code"), request.query_params.get("state")
        expected = request.cookies.get(STATE_COOKIE, "")
        if not code or not state or not secrets.compare_digest(state, expected.split("|")[0]):
            raise UsageError("The login callback is missing its code or has a stale state")
        token = await ctx.oauth.token_for_code(ctx.http, code)
        user = await ctx.verifier.verify(token)
        sid = ctx.sessions.create(user)
        target = expected.split("|", 1)[1] if "|" in expected else f"{prefix}/"
        if not target.startswith(prefix + "/"):
            target = f"{prefix}/"
        response = RedirectResponse(target, status_code=302)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax", path=prefix)
        response.delete_cookie(STATE_COOKIE, path=prefix)
        return response

    @router.get("/logout")
    async def logout(request: Request) -> Response:
        request.app.state.portal.sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/hub/logout", status_code=302)
        response.delete_cookie(SESSION_COOKIE, path=prefix)
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        path = STATIC / name
        if "/" in name or not path.is_file():
            raise NotFoundError(f"No static file {name!r}")
        return FileResponse(path)

    @router.get("/aladin/aladin.js")
    async def aladin(request: Request) -> Response:
        path = request.app.state.portal.aladin_js
        if path is None:
            raise NotFoundError("Aladin Lite is not installed (scripts/setup.sh installs it)")
        return FileResponse(path, media_type="text/javascript")

    @router.get("/hips/{path:path}")
    async def hips(
        request: Request, path: str, user: AuthenticatedUser = Depends(api_user)
    ) -> Response:
        """The platform's HiPS tiles, fetched with the user's token (for Aladin Lite)."""
        svc = _svc(request)
        response = await svc.http.get(
            f"{svc.api_url}/hips/{path}", headers={"Authorization": f"Bearer {user.token}"}
        )
        return Response(
            response.content,
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
            headers={"Cache-Control": "private, max-age=3600"},
        )

    # identity, schema, history -----------------------------------------------------------------
    @router.get("/api/me")
    async def me(request: Request, user: AuthenticatedUser = Depends(api_user)) -> JSONResponse:
        from sciplat.services.portal.app import warm_plots_once

        warm_plots_once()
        ctx = request.app.state.portal
        return JSONResponse(
            {
                "user": user.name,
                "scopes": sorted(user.scopes),
                "channel": ctx.signer.make(user.name, DEFAULT_NONCE),
                "hub_url": ctx.service.hub_url,
                "hips_surveys": await ctx.hips_surveys(user),
            }
        )

    @router.get("/api/schema")
    async def schema(request: Request, user: AuthenticatedUser = Depends(api_user)) -> Any:
        return await _svc(request).tap(user).tables()

    @router.get("/api/history")
    async def history(request: Request, user: AuthenticatedUser = Depends(api_user)) -> Any:
        return await _svc(request).tap(user).history(50)

    # queries ---------------------------------------------------------------------------------
    @router.post("/api/query")
    async def submit(
        request: Request, body: QueryBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        return (await _svc(request).submit(user, body.query, body.maxrec)).as_dict()

    @router.get("/api/jobs/{job_id}")
    async def job(request: Request, job_id: str, user: AuthenticatedUser = Depends(api_user)):
        wait = request.query_params.get("wait")
        status = await _svc(request).tap(user).status(job_id, wait=float(wait) if wait else None)
        return status.as_dict()

    @router.get("/api/resolve")
    async def resolve(request: Request, user: AuthenticatedUser = Depends(api_user)) -> Any:
        """An object name (object id, obs_id) -> its RA/Dec from our catalogs."""
        name = request.query_params.get("name")
        if not name:
            raise UsageError("Name an object: ?name=<object id or obs_id>")
        return await _svc(request).resolve(user, name)

    @router.get("/api/joblink")
    async def job_link(request: Request, user: AuthenticatedUser = Depends(api_user)) -> Any:
        """The deep link ``?job=<id or job URL>``: the status of that job of the user."""
        ref = request.query_params.get("ref")
        if not ref:
            raise UsageError("Name a TAP job: ?ref=<job id or job URL>")
        return (await _svc(request).job_status(user, ref)).as_dict()

    @router.post("/api/jobs/{job_id}/abort")
    async def abort(request: Request, job_id: str, user: AuthenticatedUser = Depends(api_user)):
        return (await _svc(request).tap(user).abort(job_id)).as_dict()

    @router.post("/api/jobs/{job_id}/load")
    async def load(request: Request, job_id: str, user: AuthenticatedUser = Depends(api_user)):
        return (await _svc(request).job_result(user, job_id)).__dict__

    # results ---------------------------------------------------------------------------------
    @router.get("/api/results")
    async def results(request: Request, user: AuthenticatedUser = Depends(api_user)) -> Any:
        return [i.__dict__ for i in _svc(request).results.list(user.name)]

    @router.get("/api/results/{rid}")
    async def result(request: Request, rid: str, user: AuthenticatedUser = Depends(api_user)):
        return _svc(request).results.info(user.name, rid).__dict__

    @router.post("/api/results/{rid}/page")
    async def page(
        request: Request, rid: str, body: PageBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        return _svc(request).results.page(
            user.name,
            rid,
            offset=body.offset,
            limit=body.limit,
            sort=body.sort,
            descending=body.descending,
            filters=_filters(body.filters),
        )

    @router.post("/api/results/{rid}/stats")
    async def stats(
        request: Request, rid: str, body: StatsBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        return _svc(request).results.stats(user.name, rid, body.column, _filters(body.filters))

    @router.get("/api/results/{rid}/download")
    async def download(
        request: Request, rid: str, user: AuthenticatedUser = Depends(api_user)
    ) -> Response:
        fmt = request.query_params.get("format", "votable").lower()
        svc = _svc(request)
        ext = {"votable": "xml", "csv": "csv", "parquet": "parquet"}.get(fmt)
        if ext is None:
            raise UsageError(f"Unknown download format {fmt!r}; use votable, csv or parquet")
        path = svc._tmp("." + ext)
        svc.results.export(user.name, rid, fmt, path)
        from starlette.background import BackgroundTask

        return FileResponse(
            path,
            filename=f"result-{rid}.{ext}",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    @router.post("/api/results/{rid}/save")
    async def save(
        request: Request, rid: str, body: SaveBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        if body.format not in ("votable", "csv", "parquet"):
            raise UsageError(f"Unknown format {body.format!r}; use votable, csv or parquet")
        return await _svc(request).save_to_workspace(user, rid, body.format, body.name, body.folder)

    @router.post("/api/results/{rid}/plot")
    async def plot(
        request: Request, rid: str, body: PlotBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        cache = _svc(request).results
        filters = _filters(body.filters)
        if body.type == "histogram":
            table = cache.columns(user.name, rid, plots.axis_columns(body.x), filters)
            return {
                "type": "histogram",
                **plots.histogram(plots.evaluate(table, body.x), body.bins),
            }
        if body.type != "scatter" or not body.y:
            raise UsageError("A plot is type scatter (with x and y) or histogram (with x)")
        names = list(dict.fromkeys(plots.axis_columns(body.x) + plots.axis_columns(body.y)))
        table = cache.columns(user.name, rid, names, filters)
        x, y = plots.evaluate(table, body.x), plots.evaluate(table, body.y)
        if table.num_rows <= plots.POINTS_LIMIT and not body.x_range:
            keep = [i for i in range(len(x)) if x[i] == x[i] and y[i] == y[i]]
            return {
                "type": "points",
                "x": [float(x[i]) for i in keep],
                "y": [float(y[i]) for i in keep],
                **plots.ranges(x, y),
            }
        png, meta = plots.raster(
            x, y, width=body.width, height=body.height, x_range=body.x_range, y_range=body.y_range
        )
        return {"type": "raster", "png": base64.b64encode(png).decode(), **meta}

    @router.post("/api/results/{rid}/bokeh")
    async def bokeh(
        request: Request, rid: str, body: BokehBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Response:
        """An interactive plot: a Bokeh JSON item (HoloViews; datashader above 20,000 points)."""
        params = body.model_dump()
        params["filters"] = _filters(body.filters)
        plot = await run_in_threadpool(_svc(request).bokeh_plot, user, rid, **params)
        return Response(json.dumps(plot), media_type="application/json")

    @router.get("/bokeh/{name}")
    async def bokehjs(name: str) -> Response:
        """BokehJS of the installed bokeh (the version the plots are made with)."""
        from bokeh.util.paths import bokehjs_path

        if name not in ("bokeh.min.js", "bokeh-gl.min.js"):
            raise NotFoundError(f"No BokehJS file {name!r}")
        return FileResponse(
            bokehjs_path() / "js" / name,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    # images ----------------------------------------------------------------------------------
    @router.post("/api/sia")
    async def sia(
        request: Request, body: SiaBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        time = tuple(body.time) if body.time and len(body.time) == 2 else None
        info = await _svc(request).sia_search(user, body.ra, body.dec, body.radius, body.band, time)
        return info.__dict__

    @router.post("/api/images")
    async def image_from_url(
        request: Request, body: ImageUrlBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        title = body.title or readable_name(body.url, "image")
        return (await _svc(request).open_image_url(user, body.url, title)).__dict__

    @router.post("/api/images/cutout")
    async def cutout(
        request: Request, body: CutoutBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        info = await _svc(request).cutout(
            user, body.dataset_id, body.ra, body.dec, body.radius, body.of
        )
        return info.__dict__

    @router.get("/api/images/{iid}")
    async def image_info(request: Request, iid: str, user: AuthenticatedUser = Depends(api_user)):
        return _svc(request).images.info(user.name, iid).__dict__

    @router.get("/api/images/{iid}/png")
    async def image_png(
        request: Request, iid: str, user: AuthenticatedUser = Depends(api_user)
    ) -> Response:
        q = request.query_params
        png = _svc(request).images.render(
            user.name, iid, stretch=q.get("stretch", "asinh"), cmap=q.get("cmap", "gray")
        )
        return Response(png, media_type="image/png")

    @router.get("/api/images/{iid}/world")
    async def image_world(
        request: Request, iid: str, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        try:
            x, y = float(request.query_params["x"]), float(request.query_params["y"])
        except (KeyError, ValueError) as exc:
            raise UsageError("x and y (pixels) are required numbers") from exc
        return _svc(request).images.pixel_to_world(user.name, iid, x, y)

    @router.post("/api/images/{iid}/overlay")
    async def overlay(
        request: Request, iid: str, body: OverlayBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        svc = _svc(request)
        info = svc.results.info(user.name, body.result)
        ra, dec = sky_columns(info.columns)
        table = svc.results.columns(user.name, body.result, [ra, dec], _filters(body.filters))
        ras = table.column(0).to_numpy(zero_copy_only=False).astype("f8")
        decs = table.column(1).to_numpy(zero_copy_only=False).astype("f8")
        x, y, inside = svc.images.world_to_pixel(user.name, iid, ras, decs)
        idx = [int(i) for i in inside.nonzero()[0][:20000]]
        return {
            "ra_column": ra,
            "dec_column": dec,
            "points": [[float(x[i]), float(y[i]), float(ras[i]), float(decs[i])] for i in idx],
            "outside": int((~inside).sum()),
        }

    @router.post("/api/results/{rid}/sky")
    async def sky(
        request: Request, rid: str, body: PageBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        """RA/Dec of (up to 5000 of) a result's rows, for the all-sky view's overlay."""
        svc = _svc(request)
        info = svc.results.info(user.name, rid)
        ra, dec = sky_columns(info.columns)
        table = svc.results.columns(user.name, rid, [ra, dec], _filters(body.filters), limit=5000)
        return {
            "ra_column": ra,
            "dec_column": dec,
            "points": [
                [r, d]
                for r, d in zip(
                    table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True
                )
                if r is not None and d is not None
            ],
        }

    # workspace (WebDAV, as the user) ---------------------------------------------------------
    @router.get("/api/workspace")
    async def workspace(request: Request, user: AuthenticatedUser = Depends(api_user)) -> Any:
        rel = clean_path(request.query_params.get("path", ""))
        ws = _svc(request).workspace(user)
        return {"path": rel, "url": ws.url(rel, public=True), "entries": await ws.list(rel)}

    @router.post("/api/workspace/upload")
    async def workspace_upload(
        request: Request, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        form = await request.form(max_part_size=MAX_UPLOAD)
        part, folder = form.get("file"), form.get("folder") or ""
        if part is None or isinstance(part, str) or not isinstance(folder, str):
            raise UsageError("An upload needs a file part named 'file' (and a text 'folder')")
        name = clean_path(Path(part.filename or "").name, allow_root=False)
        data = await part.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise UsageError(
                f"Uploads through the portal are limited to {MAX_UPLOAD // 2**20} MiB; "
                "use WebDAV (rclone, davfs2) for larger files"
            )
        rel = f"{clean_path(folder)}/{name}".lstrip("/")
        url = await _svc(request).workspace(user).put(rel, data)
        return {"path": rel, "url": url, "size": len(data)}

    @router.post("/api/workspace/open")
    async def workspace_open(
        request: Request, body: WorkspaceOpenBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        return await _svc(request).open_workspace_file(user, body.path)

    # notebook --------------------------------------------------------------------------------
    @router.post("/api/notebook")
    async def notebook(
        request: Request, body: NotebookBody, user: AuthenticatedUser = Depends(api_user)
    ) -> Any:
        return await _svc(request).open_in_notebook(user, body.job_id)

    return router
