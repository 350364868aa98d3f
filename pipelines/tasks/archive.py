"""The alert archive: Avro container files per visit and detector, replayable in order."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["AlertArchive"]


class AlertArchive:
    """``root/<visit>/<detector>.avro`` (Avro object container, the alert schema embedded).

    Writing a visit/detector again replaces its file (re-processing gives no duplicates);
    :meth:`replay` yields alerts in visit order from any visit on.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, visit: int, detector: int, packets: list[dict[str, Any]], schema: Any) -> Path:
        path = self.root / str(visit) / f"{detector}.avro"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                schema.store_alerts(f, packets)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def visits(self) -> list[int]:
        if not self.root.exists():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def replay(self, since_visit: int = 0) -> Iterator[dict[str, Any]]:
        for visit in self.visits():
            if visit < since_visit:
                continue
            for path in sorted((self.root / str(visit)).glob("*.avro")):
                yield from self.read_file(path)

    @staticmethod
    def read_file(path: Path) -> list[dict[str, Any]]:
        from lsst.alert.packet import retrieve_alerts

        with open(path, "rb") as f:
            _, alerts = retrieve_alerts(f)
            return list(alerts)
