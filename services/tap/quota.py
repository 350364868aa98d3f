"""Per-user concurrent-query limits, from the user's groups (``quotas.tap_concurrent``).

A user gets the largest limit among their groups (the platform's quota rule); a user in no
configured group gets the default. Sync queries over the limit are refused with 429; async jobs
wait in QUEUED for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from sciplat.config import QuotaConfig, Settings
from sciplat.services.common.errors import QuotaExceededError

__all__ = ["QueryQuota"]


class QueryQuota:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def limit(self, groups: tuple[str, ...]) -> int:
        limits = [
            self._settings.groups[g].quotas.tap_concurrent
            for g in groups
            if g in self._settings.groups
        ]
        return max(limits) if limits else QuotaConfig().tap_concurrent

    def running(self, user: str) -> int:
        return self._running.get(user, 0)

    def try_acquire(self, user: str, groups: tuple[str, ...]) -> bool:
        limit = self.limit(groups)
        with self._lock:
            count = self._running.get(user, 0)
            if count >= limit:
                return False
            self._running[user] = count + 1
            return True

    def acquire(self, user: str, groups: tuple[str, ...]) -> None:
        """Take a slot now or raise :class:`QuotaExceededError` (HTTP 429)."""
        if not self.try_acquire(user, groups):
            limit = self.limit(groups)
            raise QuotaExceededError(
                f"You already have {limit} TAP queries running, the most your groups allow; "
                "wait for one to finish (or use async jobs, which queue)"
            )

    def release(self, user: str) -> None:
        with self._lock:
            count = self._running.get(user, 0) - 1
            if count > 0:
                self._running[user] = count
            else:
                self._running.pop(user, None)

    @contextlib.asynccontextmanager
    async def slot(self, user: str, groups: tuple[str, ...]) -> AsyncIterator[None]:
        """Wait for a slot (async jobs), holding it for the block."""
        while not self.try_acquire(user, groups):
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            self.release(user)
