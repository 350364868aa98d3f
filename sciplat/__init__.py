"""sciplat: an open, deployable science platform.

Inside a lab, ``import sciplat`` gives the client API: :func:`discovery` and the service
clients, each configured from the lab's discovery document and token.
"""

from sciplat.client import discovery

__all__ = ["discovery"]
__version__ = "0.1.0"
