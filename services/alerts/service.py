"""Reading the alert archive for queries and for the live stream."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from sciplat.pipelines.tasks.archive import AlertArchive
from sciplat.services.alerts.filters import AlertFilter

__all__ = ["AlertStreamService", "to_json"]

CUTOUTS = ("cutoutDifference", "cutoutScience", "cutoutTemplate")


def to_json(alert: dict[str, Any], cutouts: bool = False) -> dict[str, Any]:
    """An alert as JSON: cutouts dropped, or base64-encoded FITS with *cutouts*."""
    out = {k: v for k, v in alert.items() if k not in CUTOUTS}
    if cutouts:
        for key in CUTOUTS:
            if alert.get(key) is not None:
                out[key] = base64.b64encode(alert[key]).decode()
    return out


class AlertStreamService:
    """Alerts from the archive (ordered by visit, then detector), filtered per subscriber."""

    def __init__(self, root: Path, poll_seconds: float = 1.0) -> None:
        self.archive = AlertArchive(root)
        self.poll_seconds = poll_seconds

    def summary(self) -> dict[str, Any]:
        visits = self.archive.visits()
        return {
            "visits": len(visits),
            "first_visit": visits[0] if visits else None,
            "last_visit": visits[-1] if visits else None,
        }

    def query(self, since_visit: int, alert_filter: AlertFilter, limit: int) -> Iterator[dict]:
        count = 0
        for alert in self.archive.replay(since_visit):
            if alert_filter(alert):
                yield alert
                count += 1
                if count >= limit:
                    return

    async def follow(
        self, since_visit: int, alert_filter: AlertFilter, max_idle_seconds: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Replay from *since_visit*, then wait for new visit/detector files and send those."""
        seen: set[Path] = set()
        idle = 0.0
        while True:
            new = False
            for visit in self.archive.visits():
                if visit < since_visit:
                    continue
                for path in sorted((self.archive.root / str(visit)).glob("*.avro")):
                    if path in seen:
                        continue
                    seen.add(path)
                    new = True
                    for alert in AlertArchive.read_file(path):
                        if alert_filter(alert):
                            yield alert
            if new:
                idle = 0.0
            else:
                if max_idle_seconds is not None and idle >= max_idle_seconds:
                    return
                await asyncio.sleep(self.poll_seconds)
                idle += self.poll_seconds
