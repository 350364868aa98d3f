"""The image services' process singletons, shared by the sia, datalink, soda and hips plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from sciplat.services.images.butler import ImageRepository
from sciplat.services.images.obscore import ObsCoreStore
from sciplat.services.images.signing import UrlSigner
from sciplat.services.plugin import AppContext

__all__ = [
    "CutoutLimits",
    "ImageBackend",
    "backend_dependency",
    "get_backend",
    "shutdown_backend",
]

_KEY = "images"


@dataclass(frozen=True)
class CutoutLimits:
    """What one SODA request may ask for."""

    max_cutouts: int = 50
    max_pixels: int = 64 * 2**20  # summed over every cutout and plane


@dataclass
class ImageBackend:
    """Butler repository, ObsCore table, URL signer and the public URL of the API service."""

    dataset_dir: Path
    public_url: str
    repo: ImageRepository
    obscore: ObsCoreStore
    signer: UrlSigner
    limits: CutoutLimits = field(default_factory=CutoutLimits)

    @property
    def hips_dir(self) -> Path:
        return self.dataset_dir / "hips"

    def url(self, service: str, path: str = "") -> str:
        return f"{self.public_url}/{service}/{path}".rstrip("/")

    def available(self) -> tuple[bool, str]:
        ok = (
            self.dataset_dir / "butler" / "butler.yaml"
        ).exists() and self.obscore.catalog.exists()
        return ok, "service is accepting queries" if ok else "the data preview is not built"


def get_backend(context: AppContext) -> ImageBackend:
    """The backend of this process (built on first use)."""
    backend = context.state.get(_KEY)
    if backend is None:
        root = context.settings.dataset_dir
        backend = ImageBackend(
            dataset_dir=root,
            public_url=context.public_url,
            repo=ImageRepository(root / "butler"),
            obscore=ObsCoreStore(root / "catalog" / "catalog.duckdb"),
            signer=UrlSigner(context.settings.services_state_dir / "images-signing.key"),
        )
        context.state[_KEY] = backend
    return backend


async def shutdown_backend(context: AppContext) -> None:
    backend = context.state.pop(_KEY, None)
    if backend is not None:
        backend.repo.close()


def backend_dependency(request: Request) -> ImageBackend:
    """FastAPI dependency: the image backend."""
    return get_backend(request.app.state.context)
