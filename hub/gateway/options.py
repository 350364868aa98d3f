"""Cluster options as a function of the user: image, worker size, idle timeout - within quotas.

:func:`cluster_options` builds the callable for ``c.Backend.cluster_options``. What a user may
ask for comes from their groups' quotas (:func:`sciplat.hub.options.effective_quota`: per
field the largest of their groups' values): ``dask_cores`` and ``dask_memory`` bound one
cluster and all of a user's clusters together, ``dask_workers`` bounds one cluster's workers.
Out-of-bounds requests fail with a message naming the limit and where it comes from.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dask_gateway_server.options import Float, Integer, Options, Select

from sciplat.config import Settings

__all__ = ["QuotaFloat", "QuotaInteger", "cluster_options", "image_env"]

GiB = 2**30


class _Bounded:
    """Number fields whose errors say which limit was hit and why."""

    def __init__(self, field: str, *, why: str = "", **kwargs: Any) -> None:
        self.why = why
        super().__init__(field, **kwargs)

    def validate(self, x: Any) -> Any:
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise TypeError(f"{self.field} must be a number, got {x!r}")
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"{self.field} must be a finite number, got {x!r}")
        why = f" ({self.why})" if self.why else ""
        if self.max is not None and x > self.max:
            raise ValueError(f"{self.field}={x:g} is above your limit of {self.max:g}{why}")
        if self.min is not None and x < self.min:
            raise ValueError(f"{self.field}={x:g} is below the minimum of {self.min:g}")
        return super().validate(x)


class QuotaInteger(_Bounded, Integer):
    """An integer option bounded by a quota."""

    def validate(self, x: Any) -> Any:
        if isinstance(x, float) and x.is_integer():
            x = int(x)
        if isinstance(x, float):
            raise TypeError(f"{self.field} must be an integer, got {x!r}")
        return super().validate(x)


class QuotaFloat(_Bounded, Float):
    """A float option bounded by a quota."""


class ImageSelect(Select):
    """The image menu, with an error that lists the choices."""

    def validate(self, x: Any) -> Any:
        if isinstance(x, str) and x not in self.options:
            raise ValueError(f"unknown image {x!r}; available: {', '.join(self.options)}")
        return super().validate(x)


def image_env(settings: Settings, name: str) -> Path:
    """The environment prefix an image's clusters run from (None: sciplat's own)."""
    env = settings.image(name).env
    return Path(env) if env is not None else Path(sys.prefix)


def _images(settings: Settings) -> list[str]:
    names = [i.name for i in settings.images]
    wanted = settings.gateway.images or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"gateway.images names unknown images {unknown}; images: {names}")
    recommended = [i.name for i in settings.images if i.tag == "recommended" and i.name in wanted]
    return recommended + [n for n in wanted if n not in recommended]


def cluster_options(settings: Settings) -> Callable[[Any], Options]:
    """``c.Backend.cluster_options``: the options form and handler for one user."""
    from sciplat.hub.options import effective_quota

    gw = settings.gateway
    images = _images(settings)

    def for_user(user: Any) -> Options:
        quota = effective_quota(settings, user.groups, admin=user.admin)
        if quota is None or quota.dask_cores < 1 or quota.dask_workers < 1:

            def refuse(options: Any, user: Any) -> dict:
                raise ValueError(
                    f"{user.name} has no batch-compute quota (groups: "
                    f"{sorted(user.groups) or 'none'}); ask an administrator"
                )

            return Options(handler=refuse)
        sched_cores, sched_mem = 1, gw.scheduler_memory
        max_cores = int(quota.dask_cores - sched_cores)
        max_mem = (quota.dask_memory - sched_mem) / GiB
        if max_cores < 1 or max_mem <= 0:

            def too_small(options: Any, user: Any) -> dict:
                raise ValueError(
                    f"your quotas (dask_cores {quota.dask_cores:g}, dask_memory "
                    f"{quota.dask_memory / GiB:g} GiB) leave no room for a worker next to the "
                    "scheduler"
                )

            return Options(handler=too_small)
        max_idle = gw.max_idle_timeout or None

        def handler(options: Any, user: Any) -> dict[str, Any]:
            env = image_env(settings, options.image)
            dask = env / "bin" / "dask"
            if not dask.exists():
                raise ValueError(f"image {options.image!r} has no dask installed ({dask})")
            return {
                "image": options.image,
                "scheduler_cmd": [str(dask), "scheduler"],
                "worker_cmd": [str(dask), "worker"],
                "environment": {
                    "PATH": f"{env}/bin:/usr/local/bin:/usr/bin:/bin",
                    "VIRTUAL_ENV": str(env),
                    "PYTHONUNBUFFERED": "1",
                    # The nanny forks its worker instead of spawning a new interpreter that
                    # imports distributed again (~1.5 s per worker).
                    "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD": "fork",
                },
                "worker_cores": options.worker_cores,
                "worker_threads": options.worker_cores,
                "worker_memory": int(options.worker_memory * GiB),
                "scheduler_cores": sched_cores,
                "scheduler_memory": sched_mem,
                "idle_timeout": float(options.idle_timeout),
                "cluster_max_cores": float(quota.dask_cores),
                "cluster_max_memory": quota.dask_memory,
                "cluster_max_workers": quota.dask_workers,
                "user_max_cores": float(quota.dask_cores),
                "user_max_memory": quota.dask_memory,
                "user_max_clusters": gw.max_clusters_per_user,
            }

        return Options(
            ImageSelect("image", images, default=images[0], label="Image"),
            QuotaInteger(
                "worker_cores",
                default=min(gw.worker_cores, max_cores),
                min=1,
                max=max_cores,
                label="Worker cores",
                why=f"quota dask_cores {quota.dask_cores:g} minus 1 for the scheduler",
            ),
            QuotaFloat(
                "worker_memory",
                default=min(gw.worker_memory / GiB, max_mem),
                min=0.25,
                max=max_mem,
                label="Worker memory (GiB)",
                why=f"quota dask_memory {quota.dask_memory / GiB:g} GiB minus "
                f"{sched_mem / GiB:g} GiB for the scheduler",
            ),
            QuotaInteger(
                "idle_timeout",
                default=min(gw.idle_timeout, max_idle or gw.idle_timeout),
                min=0 if max_idle is None else 1,
                max=max_idle,
                label="Idle timeout (s)",
                why="gateway.max_idle_timeout",
            ),
            handler=handler,
        )

    return for_user
