"""sciplat: an open, deployable science platform.

Inside a lab, ``import sciplat`` gives the client API: :func:`discovery` and the service
clients, each configured from the lab's discovery document and token.
"""

from sciplat import mydb, portal
from sciplat.client import discovery
from sciplat.dask import get_gateway
from sciplat.imaging import cutout, get_datalink, get_sia_service
from sciplat.tap import get_query, get_query_history, get_tap_service

__all__ = [
    "cutout",
    "discovery",
    "get_datalink",
    "get_gateway",
    "get_query",
    "get_query_history",
    "get_sia_service",
    "get_tap_service",
    "mydb",
    "portal",
]
__version__ = "0.1.0"
