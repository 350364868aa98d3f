"""DALI request parameters: GET query and POST form merged, names case-insensitive."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from starlette.datastructures import UploadFile

from sciplat.services.common.errors import UsageError

__all__ = ["DaliParams", "dali_params"]

#: Largest multipart part accepted (uploads beyond it are refused, not truncated).
MAX_PART_SIZE = 64 * 2**20


class DaliParams:
    """Parameters of a DALI request (DALI 1.1 §3.1: names are case-insensitive).

    Values keep their case and order; repeated parameters keep every value. Uploaded files
    (multipart) are under :attr:`files`, keyed by lower-cased field name.
    """

    def __init__(
        self, items: list[tuple[str, str]], files: dict[str, UploadFile] | None = None
    ) -> None:
        self._items = [(name.lower(), value) for name, value in items]
        self.files = files or {}

    def getlist(self, name: str) -> list[str]:
        key = name.lower()
        return [value for item, value in self._items if item == key]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of *name*, or *default*."""
        values = self.getlist(name)
        return values[0] if values else default

    def single(self, name: str, default: str | None = None) -> str | None:
        """The value of a single-valued parameter; giving it twice is a usage error."""
        values = self.getlist(name)
        if len(values) > 1:
            raise UsageError(f"Parameter {name.upper()} given {len(values)} times; expected once")
        return values[0] if values else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(item == name.lower() for item, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def names(self) -> set[str]:
        return {item for item, _ in self._items}


async def dali_params(request: Request) -> DaliParams:
    """FastAPI dependency: the request's DALI parameters (parsed once per request)."""
    # Cached in the ASGI scope, which is per request (request.state may be shared lifespan
    # state under some servers).
    cached = request.scope.get("sciplat.dali_params")
    if cached is not None:
        return cached
    items = list(request.query_params.multi_items())
    files: dict[str, UploadFile] = {}
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            try:
                form = await request.form(
                    max_files=20, max_fields=1000, max_part_size=MAX_PART_SIZE
                )
            except Exception as exc:  # starlette raises several types for malformed bodies
                raise UsageError(f"Malformed form body: {exc}") from exc
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[name.lower()] = value
                else:
                    items.append((name, value))
    params = DaliParams(items, files)
    request.scope["sciplat.dali_params"] = params
    return params
