"""Serve the HiPS surveys under ``<dataset>/hips``: ``/hips/list`` (a HiPS list), and per survey
``properties``, ``Norder3/Allsky.{png,fits}`` and ``NorderK/DirD/NpixN.{png,fits}`` (image
surveys) or ``NorderK/DirD/NpixN.tsv`` (the Object catalogue).

Paths are matched against the HiPS naming rules and the survey name against the directories
that exist, so nothing outside the HiPS tree can be named. Tiles need ``custom:image:read``
like every image product (VOSI availability/capabilities of the other services are the only
anonymous endpoints).
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import NotFoundError
from sciplat.services.images.backend import IMAGE_SCOPE
from sciplat.services.plugin import AppContext, ServicePlugin

__all__ = ["plugin", "survey_names"]

_SURVEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TILE = re.compile(r"^Norder(\d{1,2})/Dir(\d{1,9})/Npix(\d{1,12})\.(png|fits|tsv)$")
_ALLSKY = re.compile(r"^Norder3/Allsky\.(png|fits)$")
_MEDIA = {"png": "image/png", "fits": "application/fits", "tsv": "text/tab-separated-values"}


def _hips_dir(request: Request) -> Path:
    context: AppContext = request.app.state.context
    return context.settings.dataset_dir / "hips"


def survey_names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if _SURVEY.match(p.name) and (p / "properties").is_file()
    )


def _survey(root: Path, name: str) -> Path:
    if not _SURVEY.match(name) or name not in survey_names(root):
        raise NotFoundError(f"No HiPS survey {name!r} (surveys: {survey_names(root)})")
    return root / name


def _router() -> APIRouter:
    router = APIRouter()
    scope = Depends(require_scope(IMAGE_SCOPE))

    @router.get("/list")
    async def hips_list(request: Request, user: AuthenticatedUser = scope) -> PlainTextResponse:
        """A HiPS list (one properties block per survey, with its service URL)."""
        root = _hips_dir(request)
        base = f"{request.app.state.context.public_url}/hips"
        blocks = []
        for name in survey_names(root):
            text = (root / name / "properties").read_text().strip()
            blocks.append(f"{text}\nhips_service_url        = {base}/{name}\n")
        return PlainTextResponse("\n".join(blocks))

    @router.get("/{survey}/properties")
    async def properties(
        survey: str, request: Request, user: AuthenticatedUser = scope
    ) -> PlainTextResponse:
        path = _survey(_hips_dir(request), survey) / "properties"
        return PlainTextResponse(path.read_text())

    @router.get("/{survey}/{tile_path:path}")
    async def tile(
        survey: str, tile_path: str, request: Request, user: AuthenticatedUser = scope
    ) -> Response:
        """A tile or an Allsky file, streamed from disk."""
        directory = _survey(_hips_dir(request), survey)
        match = _TILE.match(tile_path)
        if match:
            order, folder, npix, ext = match.groups()
            if int(folder) != int(npix) // 10000 * 10000:
                raise NotFoundError(f"Tile {tile_path!r} is not in directory Dir{folder}")
            path = (
                directory / f"Norder{int(order)}" / f"Dir{int(folder)}" / f"Npix{int(npix)}.{ext}"
            )
        elif match := _ALLSKY.match(tile_path):
            ext = match.group(1)
            path = directory / "Norder3" / f"Allsky.{ext}"
        else:
            raise NotFoundError(f"Not a HiPS path: {tile_path!r}")
        if not path.is_file():
            raise NotFoundError(f"No tile {survey}/{tile_path} (outside the survey's coverage)")
        return FileResponse(
            path, media_type=_MEDIA[ext], headers={"Cache-Control": "private, max-age=3600"}
        )

    return router


plugin = ServicePlugin(name="hips", router_factory=_router, error_format="text")
