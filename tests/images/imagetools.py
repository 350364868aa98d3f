"""Helpers of the image service tests: serving the image plugins, running STILTS."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sciplat.config import Settings
from sciplat.services.app import create_app
from sciplat.services.hips import plugin as hips_plugin
from sciplat.services.images import datalink, sia, soda
from sciplat.services.scs import plugin as scs_plugin
from sciplat.services.tap.bench import bound_socket, serve_app
from support.net import wait_for_http

PLUGINS = [sia.plugin, datalink.plugin, soda.plugin, scs_plugin, hips_plugin]


@dataclass
class ImageServer:
    url: str  # the platform root, e.g. http://127.0.0.1:1234
    settings: Settings

    @property
    def api(self) -> str:
        return f"{self.url}/services/api"


@contextmanager
def serve_images(test_hub, data_dir: Path) -> Iterator[ImageServer]:
    """The image plugins reading ``data_dir/dataset``, served by uvicorn on a loopback port,
    checking tokens against the test hub."""
    settings = test_hub.settings.model_copy(update={"data_dir": data_dir})
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(
        settings,
        prefix="/services/api",
        hub_api_url=test_hub.api_url,
        public_url=f"{url}/services/api",
        plugins=PLUGINS,
    )
    with serve_app(app, sock):
        wait_for_http(f"{url}/services/api/health", timeout=60)
        yield ImageServer(url=url, settings=settings)


def stilts(task: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    """Run a STILTS task (with the token as the HTTP Basic password, as TOPCAT sends it)."""
    auth = ["-Dstar.basicauth.user=token", f"-Dstar.basicauth.password={token}"] if token else []
    return subprocess.run(
        ["stilts", *auth, task, *args], capture_output=True, text=True, timeout=180
    )


def votlint(path: Path) -> str:
    """``stilts votlint``'s report on *path*: empty when it finds no error and no warning."""
    result = stilts("votlint", f"votable={path}")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()
