"""The commissioning page: pick a template, fill its form, run, watch, read, share.

``GET /ui`` is a shell with no data in it; its script calls the JSON API with the user's token
(kept in the tab's sessionStorage; ``/ui#token=...`` hands one over) and fetches each run form
as an HTML fragment rendered here from the template's schema. A run's output is shown in a
sandboxed frame, so notebook HTML never runs with the page's rights.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from sciplat.services.notebooks.catalog import Template
from sciplat.services.notebooks.params import FormField

__all__ = ["add_page_routes", "render_form"]

HERE = Path(__file__).resolve().parent


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render_form(template: Template, fields: list[FormField], images: list[str]) -> str:
    """The run form of *template* (an HTML fragment)."""
    return _env().get_template("form.html").render(template=template, fields=fields,
                                                   images=images)  # fmt: skip


def add_page_routes(router: APIRouter) -> None:
    @router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        context = request.app.state.context
        html = (
            _env()
            .get_template("page.html")
            .render(
                api=f"{context.public_url}/notebooks",
                hub_url=context.settings.public_url,
            )
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/ui/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        from sciplat.services.common.errors import NotFoundError

        path = HERE / "static" / name
        if "/" in name or not path.is_file():
            raise NotFoundError(f"No static file {name!r}")
        return FileResponse(path)
