"""IPAC Firefly's remote-control protocol, as ``firefly_client`` speaks it, served by the
embedded portal so a notebook's ``FireflyClient.make_client(portal_url)`` works unchanged.

Endpoints (under the portal's prefix): ``GET /healthz``; ``GET|POST /sticky/CmdSrv`` with
``cmd`` = ``CmdVersion``, ``pushAction``, ``pushAliveCheck``, ``upload``; the websocket
``/sticky/firefly/events?channelID=...`` (first message ``EVT_CONN_EST``). Supported actions
are in :data:`SUPPORTED_ACTIONS`; any other is refused with a message naming it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from sciplat.services.common.auth import AuthenticatedUser, extract_token
from sciplat.services.common.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ServiceError,
    UsageError,
)
from sciplat.services.portal.auth import PORTAL_SCOPE, SESSION_COOKIE
from sciplat.services.portal.channels import Subscriber, valid_channel
from sciplat.services.portal.service import readable_name

__all__ = ["FIREFLY_VERSION", "SUPPORTED_ACTIONS", "build_router"]

#: What CmdVersion reports (firefly_client rejects servers older than 2025.4).
FIREFLY_VERSION = "2025.5.0"

SUPPORTED_ACTIONS = {
    "table.search": "show a table (file on server or URL)",
    "table.fetch": "load a table without showing it",
    "ImagePlotCntlr.PlotImage": "show a FITS image (file on server or URL)",
    "charts.data/chartAdd": "XY plot (scatter), histogram, or a plotly-style chart of columns",
    "ImagePlotCntlr.PlotHiPS": "show a HiPS survey in the all-sky view",
    "ExternalAccessCntlr/extensionAdd": "accepted: the page sends table.highlight row events",
    "layout.setLayoutMode": "accepted, no effect (the portal has a fixed layout)",
    "layout.updateLayout": "accepted, no effect",
    "StartBrowserTab": "accepted, no effect",
}
_MAX_UPLOAD = 2 * 2**30


class _ChannelState:
    """Firefly's table ids -> portal result ids, per (user, channel)."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        self.uploads: dict[tuple[str, str], Path] = {}


def _ok(**extra: Any) -> JSONResponse:
    return JSONResponse([{"success": True, **extra}])


def _fail(message: str) -> JSONResponse:
    return JSONResponse([{"success": False, "error": message}])


async def _who(request: Request, channel: str | None) -> AuthenticatedUser | str:
    """The caller: a hub token, the portal's browser session, or a signed channel (by name)."""
    ctx = request.app.state.portal
    token = extract_token(request)
    if token is not None:
        user = await ctx.verifier.verify(token)
        if not user.has_scope(PORTAL_SCOPE):
            raise PermissionDeniedError(f"Using the portal needs the {PORTAL_SCOPE!r} scope")
        return user
    session = ctx.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return session
    signed = ctx.signer.user_of(channel or "")
    if signed is not None:
        return signed
    raise AuthenticationError(
        "The portal needs a hub token (firefly_client sends it only to https URLs) or a "
        "channel signed for you (in a lab: $FIREFLY_CHANNEL, or sciplat.portal.channel())"
    )


def build_router() -> APIRouter:
    router = APIRouter()
    state = _ChannelState()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @router.api_route("/sticky/CmdSrv", methods=["GET", "POST"])
    @router.api_route("/CmdSrv/sync", methods=["GET", "POST"])
    async def cmd_srv(request: Request) -> Response:
        params: dict[str, Any] = dict(request.query_params)
        form = None
        if request.method == "POST":
            form = await request.form(max_part_size=_MAX_UPLOAD)
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        cmd = params.get("cmd", "")
        channel = params.get("channelID") or request.headers.get("FF-channel") or ""
        if cmd == "CmdVersion":
            return JSONResponse(
                [{"success": True, "version": FIREFLY_VERSION, "server": "sciplat embedded portal"}]
            )
        who = await _who(request, channel)
        name = who if isinstance(who, str) else who.name
        ctx = request.app.state.portal
        if channel and not valid_channel(channel):
            return _fail(f"Bad channel name {channel!r}")
        if cmd == "pushAliveCheck":
            return _ok(active=ctx.bus.viewers(name, channel) > 0)
        if cmd == "upload":
            return await _upload(request, form, name)
        if cmd == "pushAction":
            user = None if isinstance(who, str) else who
            return await _push(request, ctx, state, name, channel, params, user)
        return _fail(
            f"Unsupported Firefly command {cmd!r} (supported: CmdVersion, pushAction, "
            "pushAliveCheck, upload)"
        )

    async def _upload(request: Request, form: Any, name: str) -> Response:
        if form is None:
            return _fail("upload needs a multipart POST")
        part = form.get("file") or form.get("data")
        if part is None or isinstance(part, str):
            return _fail("upload needs a file part named 'file' or 'data'")
        ctx = request.app.state.portal
        directory = ctx.upload_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        key = uuid.uuid4().hex[:16]
        path = directory / key
        with open(path, "wb") as out:
            while chunk := await part.read(1 << 20):
                out.write(chunk)
        (directory / f"{key}.name").write_text(Path(part.filename or key).name)
        return PlainTextResponse(f"${{upload}}/{key}")

    async def _push(
        request: Request,
        ctx: Any,
        state: _ChannelState,
        name: str,
        channel: str,
        params: dict[str, Any],
        user: AuthenticatedUser | None,
    ) -> Response:
        try:
            action = json.loads(params.get("action") or "{}")
        except ValueError:
            return _fail("action is not JSON")
        kind = action.get("type", "")
        payload = action.get("payload") or {}
        if kind not in SUPPORTED_ACTIONS:
            return _fail(
                f"Firefly action {kind!r} is not supported by the sciplat portal "
                f"(supported: {', '.join(sorted(SUPPORTED_ACTIONS))})"
            )
        try:
            message = await _translate(ctx, state, name, channel, kind, payload, user)
        except ServiceError as exc:
            return _fail(f"{kind}: {exc.message}")
        if message is not None:
            ctx.bus.to_viewers(name, channel, message)
        return _ok()

    @router.websocket("/sticky/firefly/events")
    async def events(websocket: WebSocket) -> None:
        channel = websocket.query_params.get("channelID") or ""
        kind = "viewer" if websocket.query_params.get("viewer") else "client"
        ctx = websocket.app.state.portal
        try:
            name = await _ws_user(websocket, channel)
        except ServiceError as exc:
            await websocket.close(
                code=4401 if exc.status_code == 401 else 4403, reason=exc.message[:120]
            )
            return
        if not valid_channel(channel):
            await websocket.close(code=4400, reason="bad channelID")
            return
        await websocket.accept()
        sub = Subscriber(kind)
        conn_id = secrets.token_hex(8)
        await websocket.send_text(
            json.dumps({"name": "EVT_CONN_EST", "data": {"connID": conn_id, "channel": channel}})
        )
        ctx.bus.subscribe(name, channel, sub)

        async def pump() -> None:
            while True:
                await websocket.send_text(await sub.queue.get())

        sender = asyncio.create_task(pump())
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    event = json.loads(text)
                except ValueError:
                    continue
                if kind == "viewer" and isinstance(event, dict) and "name" in event:
                    ctx.bus.to_clients(name, channel, event)
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            ctx.bus.unsubscribe(name, channel, sub)

    return router


async def _ws_user(websocket: WebSocket, channel: str) -> str:
    ctx = websocket.app.state.portal
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip():
        user = await ctx.verifier.verify(token.strip())
        if not user.has_scope(PORTAL_SCOPE):
            raise PermissionDeniedError(f"Using the portal needs the {PORTAL_SCOPE!r} scope")
        return user.name
    session = ctx.sessions.get(websocket.cookies.get(SESSION_COOKIE))
    if session is not None:
        return session.name
    signed = ctx.signer.user_of(channel)
    if signed is not None:
        return signed
    raise AuthenticationError("Not logged in to the portal")


async def _source_file(
    ctx: Any,
    state: _ChannelState,
    name: str,
    user: AuthenticatedUser | None,
    source: str,
    suffix: str,
) -> tuple[Path, str]:
    """A local copy of a Firefly source (``${upload}/<key>`` or a URL) and a title."""
    if source.startswith("${upload}/"):
        key = source.split("/", 1)[1]
        path = ctx.upload_dir / name / key
        if not key.isalnum() or not path.exists():
            raise UsageError(f"No uploaded file {source!r}")
        title = (ctx.upload_dir / name / f"{key}.name").read_text()
        copy = ctx.service._tmp(suffix)
        copy.write_bytes(path.read_bytes())
        return copy, title
    if source.startswith(("http://", "https://")):
        if user is None:
            raise UsageError("Opening URLs needs your token (use sciplat.portal)")
        path = await ctx.service.fetch(user, source, suffix)
        return path, readable_name(source, "table")
    raise UsageError(f"Unsupported source {source!r} (upload the file or give an http(s) URL)")


async def _translate(
    ctx: Any,
    state: _ChannelState,
    name: str,
    channel: str,
    kind: str,
    payload: dict[str, Any],
    user: AuthenticatedUser | None,
) -> dict[str, Any] | None:
    service = ctx.service
    proxy_user = user or AuthenticatedUser(name=name, scopes=frozenset())
    tables = state.tables[(name, channel)]
    if kind in ("table.search", "table.fetch"):
        request = payload.get("request") or {}
        source = request.get("source")
        if not source:
            raise UsageError("Only tables from a file or URL are supported (no catalog searches)")
        path, title = await _source_file(ctx, state, name, user, source, ".tbl")
        meta = request.get("META_INFO") or {}
        info = service.table_from_file(proxy_user, path, meta.get("title") or title)
        tbl_id = request.get("tbl_id") or meta.get("tbl_id") or info.id
        tables[tbl_id] = info.id
        if kind == "table.fetch":
            return None
        return {"kind": "table", "result": info.__dict__, "tbl_id": tbl_id}
    if kind == "ImagePlotCntlr.PlotImage":
        wp = payload.get("wpRequest") or {}
        source = wp.get("file") or wp.get("url")
        if not source:
            raise UsageError("Only images from a file or URL are supported")
        path, title = await _source_file(ctx, state, name, user, source, ".fits")
        hdu = wp.get("multiImageIdx")
        info = service.image_from_file(proxy_user, path, wp.get("title") or title, hdu)
        return {"kind": "image", "image": info.__dict__, "plot_id": wp.get("plotId")}
    if kind == "charts.data/chartAdd":
        chart = _chart(payload, tables)
        if chart["type"] == "inline":  # x/y arrays: a small result of their own
            info = _inline_result(service, proxy_user, chart["x"], chart["y"])
            chart = {"type": "scatter", "result": info.id, "x": "x", "y": "y"}
        return {"kind": "plot", "plot": chart}
    if kind == "ImagePlotCntlr.PlotHiPS":
        return {"kind": "hips", "url": payload.get("hipsRootUrl"), "wp": payload.get("wpRequest")}
    return None  # layout actions: accepted, nothing to show


def _inline_result(service: Any, user: AuthenticatedUser, x: list, y: list) -> Any:
    """A pushed chart's own x/y data as a portal result (so it plots and links like any)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(x) != len(y):
        raise UsageError("The chart's x and y have different lengths")
    try:
        table = pa.table({"x": pa.array(x, pa.float64()), "y": pa.array(y, pa.float64())})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UsageError(f"The chart's x and y must be numbers: {exc}") from exc
    path = service._tmp(".parquet")
    pq.write_table(table, path)
    return service.results.add(user.name, path, title="chart data", source="upload")


def _result_for(tables: dict[str, str], tbl_id: str | None) -> str:
    if not tbl_id or tbl_id not in tables:
        raise UsageError(f"No table {tbl_id!r} on this channel (show_table it first)")
    return tables[tbl_id]


def _column(spec: str | None) -> str | None:
    if spec is None:
        return None
    spec = str(spec)
    return spec[len("tables::") :] if spec.startswith("tables::") else spec


def _chart(payload: dict[str, Any], tables: dict[str, str]) -> dict[str, Any]:
    chart_type = payload.get("chartType")
    params = payload.get("params") or {}
    if chart_type == "scatter":
        return {
            "type": "scatter",
            "result": _result_for(tables, params.get("tbl_id")),
            "x": params.get("xCol"),
            "y": params.get("yCol"),
        }
    if chart_type == "histogram":
        return {
            "type": "histogram",
            "result": _result_for(tables, params.get("tbl_id")),
            "x": params.get("col"),
            "bins": int(params.get("numBins") or 50),
        }
    data = payload.get("data")
    if isinstance(data, list) and data:
        trace = data[0]
        ttype = trace.get("type", "scatter")
        if ttype not in ("scatter", "scattergl", "histogram"):
            raise UsageError(f"Chart trace type {ttype!r} is not supported (scatter, histogram)")
        if "tbl_id" in trace:
            result = _result_for(tables, trace["tbl_id"])
            if ttype == "histogram":
                return {
                    "type": "histogram",
                    "result": result,
                    "x": _column(trace.get("x")),
                    "bins": 50,
                }
            return {
                "type": "scatter",
                "result": result,
                "x": _column(trace.get("x")),
                "y": _column(trace.get("y")),
            }
        if isinstance(trace.get("x"), list) and isinstance(trace.get("y"), list):
            return {
                "type": "inline",
                "x": trace["x"][:20000],
                "y": trace["y"][:20000],
                "layout": payload.get("layout") or {},
            }
    raise UsageError("The chart needs a table (tbl_id) with x/y columns, or x/y data")
