"""Firefly channels: signed channel names and the per-channel message bus.

A Firefly channel connects a ``firefly_client`` (which pushes actions and listens for events)
with the browser pages viewing it (which show what was pushed and send events back). Channels
are private to a user: the bus keys them by ``(user, channel)``, so two users naming the same
channel never meet. A channel can also *be* the credential: ``sp1.<user>.<nonce>.<sig>`` names
its user and carries an HMAC made with the portal's secret. Labs get one in
``$FIREFLY_CHANNEL``, because ``firefly_client`` sends tokens only over https.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sciplat.config import Settings
from sciplat.hub.hubconfig import ensure_secret

__all__ = ["DEFAULT_NONCE", "ChannelBus", "ChannelSigner", "Subscriber", "channel_secret"]

#: The nonce of each user's default channel: the one the portal page and labs share.
DEFAULT_NONCE = "default"

_CHANNEL = re.compile(r"^[A-Za-z0-9_.~=-]{1,200}$")


def channel_secret(settings: Settings) -> str:
    """The HMAC key shared by the hub configuration (signing) and the portal (checking)."""
    return ensure_secret(settings.run_dir / "portal-channel-secret")


class ChannelSigner:
    """Makes and checks ``sp1.<user>.<nonce>.<signature>`` channel names."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _sign(self, user: str, nonce: str) -> str:
        mac = hmac.new(self._key, f"{user}.{nonce}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def make(self, user: str, nonce: str | None = None) -> str:
        nonce = nonce or secrets.token_hex(6)
        return f"sp1.{user}.{nonce}.{self._sign(user, nonce)}"

    def user_of(self, channel: str) -> str | None:
        """The user a signed channel belongs to, or None if it is not a valid signed channel."""
        parts = channel.split(".")
        if len(parts) != 4 or parts[0] != "sp1":
            return None
        _, user, nonce, sig = parts
        return user if hmac.compare_digest(sig, self._sign(user, nonce)) else None


def valid_channel(channel: str) -> bool:
    return bool(_CHANNEL.match(channel))


@dataclass(eq=False)
class Subscriber:
    """One websocket on a channel: a viewer (browser page) or a client (firefly_client)."""

    kind: str  # "viewer" | "client"
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))

    def send(self, message: dict[str, Any]) -> None:
        # A stuck socket loses messages; it never blocks the bus.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(json.dumps(message, default=str))


class ChannelBus:
    """Who listens on which ``(user, channel)``, and the actions pushed there before a viewer
    came (replayed to the first viewer, like Firefly does)."""

    def __init__(self, *, keep: int = 50) -> None:
        self._subs: dict[tuple[str, str], set[Subscriber]] = defaultdict(set)
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._keep = keep

    def subscribe(self, user: str, channel: str, sub: Subscriber) -> None:
        key = (user, channel)
        self._subs[key].add(sub)
        if sub.kind == "viewer":
            for message in self._pending.pop(key, []):
                sub.send(message)

    def unsubscribe(self, user: str, channel: str, sub: Subscriber) -> None:
        key = (user, channel)
        self._subs[key].discard(sub)
        if not self._subs[key]:
            del self._subs[key]

    def viewers(self, user: str, channel: str) -> int:
        return sum(1 for s in self._subs.get((user, channel), ()) if s.kind == "viewer")

    def to_viewers(self, user: str, channel: str, message: dict[str, Any]) -> int:
        """Send *message* to the channel's pages; kept for the next page if none is open."""
        sent = 0
        for sub in list(self._subs.get((user, channel), ())):
            if sub.kind == "viewer":
                sub.send(message)
                sent += 1
        if not sent:
            pending = self._pending[(user, channel)]
            pending.append(message)
            del pending[: -self._keep]
        return sent

    def to_clients(self, user: str, channel: str, message: dict[str, Any]) -> int:
        sent = 0
        for sub in list(self._subs.get((user, channel), ())):
            if sub.kind == "client":
                sub.send(message)
                sent += 1
        return sent
