"""SciplatSpawner: one spawner, pluggable backends, one options form.

What is the same on every backend lives here: the options form (images by tag, the sizes the
user's groups allow, "Reset user environment"), server-side validation of every submitted value,
the lab's discovery document and environment, progress events, and errors that carry the lab's
real cause. Where the lab runs is the backend's job (:mod:`sciplat.hub.backends`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any, ClassVar

from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from traitlets import Any as AnyTrait
from traitlets import Dict, Instance, List, Unicode, default

from sciplat.config import Settings
from sciplat.hub.backends import LabSpec, SpawnerBackend, backend_class
from sciplat.hub.errors import OptionsError
from sciplat.hub.options import (
    LabOptions,
    effective_quota,
    parse_form,
    render_form,
    validate_options,
)
from sciplat.images.catalog import ImageCatalog

__all__ = ["SciplatSpawner", "kernels_path", "lab_config_path", "load_settings_file"]


@functools.cache
def load_settings_file(path: str) -> Settings:
    """The effective settings `sciplat up` rendered for the hub (cached per path)."""
    return Settings.model_validate_json(Path(path).read_text())


def kernels_path() -> str:
    """A JUPYTER_PATH entry whose ``kernels/`` holds the "LSST (sciplat)" kernel spec."""
    import sciplat.kernels

    return str(Path(sciplat.kernels.__file__).resolve().parent.parent)


def lab_config_path() -> str:
    """A JUPYTER_CONFIG_PATH entry with the platform's lab settings (``images/labconfig``).

    It turns off server extensions that cost start-up time and serve nothing here (Panel's
    preview server extension: 1.3 s; jupyter_lsp, whose listeners scan every installed
    package's entry points three times, ~0.1 s of CPU, while no language server is installed
    and JupyterLab's LSP client is off by default), LSP auto-detection and the PyPI extension
    manager (0.8 s; images carry their lab extensions).
    """
    import sciplat.images

    return str(Path(sciplat.images.__file__).resolve().parent / "labconfig")


class SciplatSpawner(Spawner):
    """Spawn labs from the image catalogue at a size the user's groups allow.

    Configure through ``sciplat.yaml`` (rendered by :mod:`sciplat.hub.hubconfig`); the backend
    (``local``, later ``kubernetes``) is chosen with :attr:`backend`.
    """

    settings_file = Unicode(
        help="""JSON file with the effective sciplat settings (written by `sciplat up`).

        Example::

            c.SciplatSpawner.settings_file = "/var/lib/sciplat/run/settings.json"
        """,
    ).tag(config=True)

    backend = Unicode(
        "local",
        help="""Where labs run: ``local`` (processes on this machine) or a name registered in
        ``sciplat.hub.backends.BACKENDS``.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    reset_dirs = List(
        Unicode(),
        [".cache", ".config", ".jupyter", ".local", ".ipython", ".astropy", ".dask", ".lsst"],
        help="""Home-directory entries "Reset user environment" moves aside (never deletes).

        Example::

            c.SciplatSpawner.reset_dirs = [".cache", ".local"]
        """,
    ).tag(config=True)

    datasets = Dict(
        help="""Data sets listed in each lab's discovery document (name -> description).

        Filled by the hub configuration from the built data preview.
        """,
    ).tag(config=True)

    backend_config = Dict(
        help="Trait values for the backend (e.g. ``{'homes_dir': ...}``), passed at creation."
    ).tag(config=True)

    lab_options = Instance(LabOptions, allow_none=True, help="Validated options of this spawn.")
    backend_instance = AnyTrait()
    _backends: ClassVar[dict[tuple, SpawnerBackend]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._state: dict[str, Any] = {}
        self._events: list[dict[str, Any]] = []

    # -- configuration ------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return load_settings_file(self.settings_file)

    @property
    def catalog(self) -> ImageCatalog:
        return ImageCatalog(self.settings.images)

    def _backend(self) -> SpawnerBackend:
        """The backend; one per hub process and configuration, since it owns the children."""
        if self.backend_instance is None:
            key = _backend_key(self.backend, self.backend_config)
            if key not in self._backends:
                cls = backend_class(self.backend)
                self._backends[key] = cls(log=self.log, **self.backend_config)
            self.backend_instance = self._backends[key]
        return self.backend_instance

    @classmethod
    async def prewarm(
        cls, backend: str, backend_config: dict[str, Any], image: Any, log: Any
    ) -> None:
        """Let the backend prepare *image* before the first spawn (the local one forks labs
        from a per-image zygote that takes a few seconds to start)."""
        key = _backend_key(backend, backend_config)
        if key not in cls._backends:
            cls._backends[key] = backend_class(backend)(log=log, **backend_config)
        prepare = getattr(cls._backends[key], "prewarm", None)
        if prepare is not None:
            await prepare(image)

    def _groups(self) -> list[str]:
        return [g.name for g in self.user.groups]

    def _is_admin(self) -> bool:
        return bool(getattr(self.user, "admin", False))

    # -- options --------------------------------------------------------------------------------
    async def get_options_form(self) -> str:
        return render_form(
            self.settings,
            self.catalog,
            self._groups(),
            admin=self._is_admin(),
            previous=self.orm_spawner.user_options or {},
        )

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._options_from_form

    def _options_from_form(self, form_data: dict[str, list[str]]) -> dict[str, Any]:
        options = parse_form(form_data)
        # Refuse a forged value here already, so the form is shown again with the message.
        self._validate(options)
        return options

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return self._apply_options

    def _apply_options(self, spawner: Spawner, user_options: dict[str, Any]) -> None:
        """Validate again whatever arrived (form, REST API, remembered options)."""
        self.lab_options = self._validate(user_options)
        if self.name and not self._is_admin():
            self._check_named_server_quota()
        self.mem_limit = self.lab_options.size.memory
        self.cpu_limit = self.lab_options.size.cpu

    def _check_named_server_quota(self) -> None:
        """Running named servers count against the groups' quota, whoever asks for the spawn."""
        quota = effective_quota(self.settings, self._groups())
        allowed = quota.named_servers if quota else 0
        if allowed == 0:
            raise OptionsError("Your groups allow no named servers; use your default server.")
        running = sorted(
            name
            for name, orm_spawner in self.user.orm_user.orm_spawners.items()
            if name and name != self.name and orm_spawner.server is not None
        )
        if len(running) >= allowed:
            raise OptionsError(
                f"You already run {len(running)} named server(s) ({', '.join(running)}), the "
                f"most your groups allow ({allowed}); stop one first."
            )

    def _validate(self, user_options: dict[str, Any]) -> LabOptions:
        return validate_options(
            user_options or {}, self.settings, self.catalog, self._groups(), admin=self._is_admin()
        )

    # -- progress -------------------------------------------------------------------------------
    def _progress(self, percent: int, message: str) -> None:
        self._events.append({"progress": percent, "message": message})

    async def progress(self):
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            await asyncio.sleep(0.1)

    # -- lifecycle ------------------------------------------------------------------------------
    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        image = self.lab_options.image if self.lab_options else self.catalog.default()
        env.update(
            PATH=f"{image.prefix / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            JUPYTER_PATH=kernels_path(),
            JUPYTER_CONFIG_PATH=lab_config_path(),
            LANG="C.UTF-8",
            SCIPLAT_IMAGE=image.name,
            SCIPLAT_IMAGE_TAG=image.tag,
            SCIPLAT_IMAGE_DISPLAY=image.display_name,
            SCIPLAT_PUBLIC_URL=self.settings.public_url,
        )
        if self.lab_options:
            env["SCIPLAT_SIZE"] = self.lab_options.size.name
        if self.cpu_limit and float(self.cpu_limit).is_integer():
            # JupyterHub writes the Float ("2.0"); lsst.resources reads Nublado's CPU_LIMIT with
            # int() and fails on it (prompt processing in a lab raised ValueError).
            env["CPU_LIMIT"] = str(int(self.cpu_limit))
        return env

    def get_args(self) -> list[str]:
        return [
            *super().get_args(),
            "--MappingKernelManager.default_kernel_name=lsst",
            "--ServerApp.open_browser=False",
        ]

    def _discovery(self) -> dict[str, Any]:
        from sciplat.client import discovery_document

        doc = discovery_document(self.settings.public_url, datasets=dict(self.datasets))
        return doc.model_dump(mode="json")

    async def start(self) -> str:
        self._events = []
        if self.lab_options is None:  # apply_user_options always runs first; be safe anyway
            self._apply_options(self, self.user_options)
        self.port = random_port()
        spec = LabSpec(
            username=self.user.name,
            server_name=self.name,
            options=self.lab_options,
            env=self.get_env(),
            args=self.get_args(),
            discovery=self._discovery(),
            reset_dirs=list(self.reset_dirs),
            port=self.port,
            extra=self._spec_extra(),
        )
        started = time.monotonic()
        self._state = {"options": self.lab_options.as_user_options()}
        async for state in self._backend().start(spec, self._progress):
            self._state = {**state, "options": self.lab_options.as_user_options()}
        self.log.info("Lab %s listening after %.2f s", self._log_name, time.monotonic() - started)
        return self._state["url"]

    def _spec_extra(self) -> dict[str, Any]:
        """What backends other than the local one need: a stable id, groups and disk quota."""
        quota = effective_quota(self.settings, self._groups())
        return {
            "user_id": self.user.id,
            "groups": self._groups(),
            **({"disk": quota.disk} if quota else {}),
        }

    async def poll(self) -> int | None:
        if not set(self._state) - {"options"}:  # nothing started (or state cleared)
            return 0
        return await self._backend().poll(self._state)

    async def stop(self, now: bool = False) -> None:
        if self._state:
            await self._backend().stop(self._state, now=now)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(self._state)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._state = dict(state or {})

    def clear_state(self) -> None:
        super().clear_state()
        self._state = {}
        self.lab_options = None


def _backend_key(backend: str, config: dict[str, Any]) -> tuple[str, str]:
    """Cache key of a backend instance (config values may be dicts or lists)."""
    return backend, json.dumps(config, sort_keys=True, default=str)
