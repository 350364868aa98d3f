"""Spawner backends: where and how a lab process runs (``local`` here, ``kubernetes`` later).

:class:`SciplatSpawner` owns what is the same everywhere (options, quotas, discovery, progress,
errors); a backend only starts, stops and polls one lab described by a :class:`LabSpec`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from traitlets import Integer
from traitlets.config import LoggingConfigurable

from sciplat.hub.options import LabOptions

__all__ = ["BACKENDS", "LabSpec", "SpawnerBackend", "backend_class"]

#: Backend name (``SciplatSpawner.backend``) -> "module:Class".
BACKENDS: dict[str, str] = {
    "local": "sciplat.hub.backends.local:LocalBackend",
    "kubernetes": "sciplat.hub.backends.kubernetes:KubernetesBackend",
}

ProgressFn = Callable[[int, str], None]


@dataclass
class LabSpec:
    """Everything a backend needs to start one lab."""

    username: str
    server_name: str
    options: LabOptions
    env: dict[str, str]
    args: list[str]
    discovery: dict[str, Any]
    reset_dirs: list[str]
    port: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A name unique per user and server, safe in paths."""
        return f"{self.username}--{self.server_name}" if self.server_name else self.username


class SpawnerBackend(LoggingConfigurable):
    """Base class of spawner backends.

    Subclass this and override :meth:`start`, :meth:`stop` and :meth:`poll`. State is a
    JSON-able dict the hub stores in its database; it must be enough to stop or poll a lab
    after a hub restart.
    """

    _required: ClassVar[tuple[str, ...]] = ("start", "stop", "poll")

    log_tail_lines = Integer(
        25, help="Lines of a failed lab's log shown on the spawn page and in the API error."
    ).tag(config=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [m for m in cls._required if getattr(cls, m) is getattr(SpawnerBackend, m)]
        if missing:
            raise NotImplementedError(f"{cls.__name__} must override {', '.join(missing)}")

    def start(self, spec: LabSpec, progress: ProgressFn) -> AsyncIterator[dict[str, Any]]:
        """Start the lab; an async generator of state dicts.

        Yield state as soon as there is something to clean up (account, cgroup, pid): the
        last yielded state is what :meth:`stop` gets if the start fails halfway. The final
        state must contain ``"url"``, the lab's address. Raise
        :class:`~sciplat.hub.errors.LabStartError` with the lab's own error output when it
        dies during start.
        """
        raise NotImplementedError

    async def stop(self, state: dict[str, Any], *, now: bool = False) -> None:
        """Stop the lab described by *state* (no-op if it is not running)."""
        raise NotImplementedError

    async def poll(self, state: dict[str, Any]) -> int | None:
        """None while the lab runs, else an exit status (0 when unknown)."""
        raise NotImplementedError


def backend_class(name: str) -> type[SpawnerBackend]:
    """The backend class registered as *name*."""
    import importlib

    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown spawner backend {name!r} (known: {sorted(BACKENDS)})") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
