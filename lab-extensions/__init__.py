"""The lab's own extension: a prebuilt JupyterLab 4 frontend (``sciplat-lab/``, TypeScript)
and this Jupyter server extension, which serves it the platform's facts and actions under
``{base_url}sciplat-lab/`` (status, start-up problems, tutorials, query history, portal, run
with parameters, save and exit). Enabled by ``jupyter-config/.../sciplat_lab.json``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "sciplat.labextension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the handlers, and give the lab the read-only ``~/tutorials`` link."""
    from pathlib import Path

    from sciplat.labextension import daskclusters
    from sciplat.labextension.config import SciplatLab
    from sciplat.labextension.handlers import setup_handlers

    config = SciplatLab(parent=serverapp)
    setup_handlers(serverapp.web_app, config, serverapp.root_dir)
    daskclusters.install(serverapp)  # the dask sidebar lists the user's gateway clusters
    try:
        from sciplat.notebooks import link_tutorials

        link_tutorials(Path(config.home))
    except OSError as exc:  # a read-only or full home: the start-up dialog says so
        serverapp.log.warning("sciplat-lab: could not link ~/tutorials: %s", exc)
    serverapp.log.info("sciplat-lab server extension loaded")
