"""Settings of the lab's server extension (traitlets, set in ``jupyter_server_config``)."""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Float, Int, Unicode, default
from traitlets.config import Configurable

__all__ = ["SciplatLab"]


class SciplatLab(Configurable):
    """What the sciplat lab extension checks and how long it waits for platform services.

    Example::

        c.SciplatLab.disk_free_min_bytes = 200 * 2**20
    """

    disk_free_min_bytes = Int(
        100 * 2**20,
        help="""Free space (bytes) under the home directory below which start-up reports
        "disk full". ``0`` turns the check off.

        Example::

            c.SciplatLab.disk_free_min_bytes = 500 * 2**20
        """,
    ).tag(config=True)

    service_timeout = Float(
        15.0,
        help="""Seconds to wait for a platform service (TAP, notebooks, portal, hub) before
        answering that it is unreachable.""",
    ).tag(config=True)

    home = Unicode(
        help="""The user's home directory (start-up checks, tutorials link). Default: ``$HOME``.""",
    ).tag(config=True)

    @default("home")
    def _default_home(self) -> str:
        return os.environ.get("HOME") or str(Path.home())
