"""User workspaces: files over WebDAV (``/services/api/webdav``), quotas.

Every user has a home (``<data>/home/<user>``, the same directory their lab uses) and each
configured group a shared directory (``<data>/groups/<group>``), reachable from the lab (POSIX),
from the portal and from outside (WebDAV).
"""

from sciplat.services.plugin import ServicePlugin
from sciplat.services.workspace.webdav import WebDAVFrontend

__all__ = ["plugin"]

plugin = ServicePlugin(name="webdav", asgi_app_factory=WebDAVFrontend, error_format="text")
