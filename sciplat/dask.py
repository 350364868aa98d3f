"""Batch compute from a notebook: a dask-gateway client configured for this platform.

In a lab the spawner sets ``DASK_GATEWAY__*`` (address, proxy address, public address, hub
auth), so both ``dask_gateway.Gateway()`` and :func:`get_gateway` work with no arguments::

    import sciplat
    gateway = sciplat.get_gateway()
    cluster = gateway.new_cluster(worker_cores=1, worker_memory=2)
    cluster.adapt(minimum=1, maximum=4)
    client = cluster.get_client()

Outside a lab, pass the platform's URL and a hub token (made on the hub's token page, with
the ``access:services!service=dask-gateway`` scope) and the scheduler proxy's address.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["gateway_options", "get_gateway"]

GATEWAY_PATH = "services/dask-gateway"
#: Where the gateway puts the message of a refusal (``sciplat.hub.gateway.auth``).
ERROR_HEADER = "X-Dask-Gateway-Error"


def _gateway_class() -> type:
    import aiohttp
    from dask_gateway import Gateway

    class SciplatGateway(Gateway):
        """``dask_gateway.Gateway`` whose refusals (403) say why, as ``PermissionError``."""

        async def _request(self, method: str, url: str, json: Any = None) -> Any:
            try:
                return await super()._request(method, url, json=json)
            except aiohttp.ClientResponseError as exc:
                if exc.status == 403:
                    reason = (exc.headers or {}).get(ERROR_HEADER) or exc.message
                    raise PermissionError(f"dask-gateway refused: {reason}") from exc
                raise

    return SciplatGateway


def gateway_options(
    base_url: str | None = None,
    *,
    token: str | None = None,
    proxy_address: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``dask_gateway.Gateway`` (empty in a lab: the environment has them)."""
    if base_url is None:
        if os.environ.get("DASK_GATEWAY__ADDRESS"):
            return {}
        raise RuntimeError(
            "not in a sciplat lab ($DASK_GATEWAY__ADDRESS is not set): call "
            "sciplat.get_gateway(base_url, token=..., proxy_address='gateway://host:port')"
        )
    from dask_gateway import JupyterHubAuth

    from sciplat.client import token as lab_token

    token = token or lab_token()
    if not token:
        raise ValueError("a hub token is needed outside a lab (token=...)")
    base = base_url.rstrip("/")
    host = base.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return {
        "address": f"{base}/{GATEWAY_PATH}",
        "public_address": f"{base}/{GATEWAY_PATH}",
        "proxy_address": proxy_address or f"gateway://{host}:8786",
        "auth": JupyterHubAuth(api_token=token),
    }


def get_gateway(
    base_url: str | None = None,
    *,
    token: str | None = None,
    proxy_address: str | None = None,
    **kwargs: Any,
) -> Any:
    """A ``dask_gateway.Gateway`` for this platform (see the module docstring); a refusal
    (no access, someone else's cluster) raises ``PermissionError`` with the gateway's reason."""
    options = gateway_options(base_url, token=token, proxy_address=proxy_address)
    return _gateway_class()(**options, **kwargs)
