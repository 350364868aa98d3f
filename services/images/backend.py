"""The image services' process singletons, shared by the sia, datalink, soda and hips plugins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Depends, Request

from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.params import DaliParams, dali_params
from sciplat.services.images.butler import ImageRepository
from sciplat.services.images.obscore import ObsCoreStore
from sciplat.services.images.signing import UrlSigner
from sciplat.services.images.vosi import Capability, add_vosi_routes
from sciplat.services.plugin import AppContext, ServicePlugin

__all__ = [
    "IMAGE_SCOPE",
    "CutoutLimits",
    "ImageBackend",
    "ImageRequest",
    "backend_dependency",
    "get_backend",
    "image_plugin",
    "image_request",
    "image_router",
    "shutdown_backend",
]

_KEY = "images"
#: The scope that grants image data, links and cutouts.
IMAGE_SCOPE = "custom:image:read"


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


@dataclass(frozen=True)
class ImageRequest:
    """What every image data endpoint needs: the DALI parameters, the caller, the backend."""

    params: DaliParams
    user: AuthenticatedUser
    backend: ImageBackend


def image_request(
    request: Request,
    params: DaliParams = Depends(dali_params),
    user: AuthenticatedUser = Depends(require_scope(IMAGE_SCOPE)),
) -> ImageRequest:
    """FastAPI dependency: an authorised image request (``custom:image:read``)."""
    return ImageRequest(params, user, get_backend(request.app.state.context))


def image_router(service: str, capabilities: list[Capability]) -> APIRouter:
    """A router of one image service with its VOSI routes (available when the data is)."""
    router = APIRouter()
    add_vosi_routes(router, service, capabilities, lambda c: get_backend(c).available())
    return router


async def _startup(context: AppContext) -> None:
    get_backend(context)


def image_plugin(name: str, router_factory: Callable[[], APIRouter]) -> ServicePlugin:
    """The plugin of an image service that needs nothing but the shared backend."""
    return ServicePlugin(
        name=name, router_factory=router_factory, startup=_startup, shutdown=shutdown_backend
    )
