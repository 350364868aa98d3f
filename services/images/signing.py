"""Short-lived signed URLs for file downloads (HMAC-SHA256).

A DataLink ``#this`` link is a URL that carries its own authorisation: the dataset, the plane,
the user it was made for and an expiry, signed with a secret kept in the API service's state
directory (created 0600 on first use). Anyone holding the URL may fetch the file until it
expires, which is what lets browsers and tools without the token download it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from sciplat.services.common.errors import PermissionDeniedError

__all__ = ["UrlSigner"]


class UrlSigner:
    """Signs and verifies (dataset, plane, user, expiry) tuples."""

    def __init__(self, key_file: Path, *, lifetime: int = 900) -> None:
        self.key_file = Path(key_file)
        self.lifetime = lifetime
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            if not self.key_file.exists():
                fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
            self._key = bytes.fromhex(self.key_file.read_text().strip())
        return self._key

    def _mac(self, dataset: str, plane: str, user: str, expires: int) -> str:
        message = f"{dataset}\n{plane}\n{user}\n{expires}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def sign(self, dataset: str, plane: str, user: str) -> dict[str, str]:
        """Query parameters authorising a download of *plane* of *dataset* for a while."""
        expires = int(time.time()) + self.lifetime
        return {
            "plane": plane,
            "user": user,
            "expires": str(expires),
            "signature": self._mac(dataset, plane, user, expires),
        }

    def verify(self, dataset: str, plane: str, user: str, expires: str, signature: str) -> None:
        """Raise :class:`PermissionDeniedError` unless the signature is valid and current."""
        try:
            when = int(expires)
        except ValueError:
            raise PermissionDeniedError("Malformed download link") from None
        expected = self._mac(dataset, plane, user, when)
        if not hmac.compare_digest(expected, signature):
            raise PermissionDeniedError("Invalid download link signature")
        if when < time.time():
            raise PermissionDeniedError(
                "This download link has expired; ask DataLink for a new one"
            )
