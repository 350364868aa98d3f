"""Operator side of batch compute: every user's clusters, through the gateway's admin API.

Used by ``sciplat admin clusters list|scale|stop``. The token is a hub admin's or the
``sciplat-cli`` service's (granted the gateway's access scope by :mod:`.hubconf`).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

__all__ = ["ClustersAdmin", "GatewayAdminError", "format_table"]


class GatewayAdminError(RuntimeError):
    """The gateway refused or could not be reached; the message says why."""


class ClustersAdmin:
    """Admin operations on ``<hub>/services/dask-gateway``."""

    def __init__(self, address: str, token: str, *, timeout: float = 30.0) -> None:
        self.address = address.rstrip("/")
        self.client = httpx.Client(
            base_url=self.address,
            headers={"Authorization": f"token {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> ClustersAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayAdminError(f"cannot reach the gateway at {self.address}: {exc}") from exc
        if response.status_code >= 400:
            try:
                reason = response.json().get("error", response.text)
            except ValueError:
                reason = response.text or response.reason_phrase
            raise GatewayAdminError(f"HTTP {response.status_code}: {reason}")
        return response

    def snapshot(self) -> dict[str, Any]:
        """All active clusters, totals, the machine's capacity."""
        return self._call("GET", "/api/v1/admin/clusters").json()

    def scale(self, name: str, count: int) -> str | None:
        """Scale *name* to *count* workers; returns the gateway's note if it capped the count."""
        body = self._call("POST", f"/api/v1/clusters/{name}/scale", json={"count": count}).json()
        return body.get("msg")

    def stop(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/clusters/{name}")

    def stop_where(self, *, user: str | None = None, wait: float = 30.0) -> list[str]:
        """Stop every cluster (of *user*); wait until they are gone; return their names."""
        names = [
            c["name"] for c in self.snapshot()["clusters"] if user is None or c["user"] == user
        ]
        for name in names:
            self.stop(name)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            left = {c["name"] for c in self.snapshot()["clusters"]} & set(names)
            if not left:
                break
            time.sleep(0.5)
        return names


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f}G"


def format_table(snapshot: dict[str, Any]) -> str:
    """Human-readable listing with totals against the machine's capacity."""
    rows = [("CLUSTER", "USER", "STATUS", "WORKERS", "CORES", "MEMORY", "AGE")]
    now_ms = time.time() * 1000
    for c in sorted(snapshot["clusters"], key=lambda c: (c["user"], c["name"])):
        age = "" if not c.get("start_time") else f"{(now_ms - c['start_time']) / 60000:.0f}m"
        rows.append(
            (
                c["name"],
                c["user"],
                c["status"],
                f"{c['workers']}/{c['max_workers']}",
                f"{c['cores']:g}",
                _gib(c["memory"]),
                age,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    t, cap = snapshot["totals"], snapshot["capacity"]
    lines.append(
        f"total: {t['clusters']} cluster(s) of {t['users']} user(s), {t['workers']} worker(s), "
        f"{t['cores']:g} of {cap['cores']} cores, {_gib(t['memory'])} of {_gib(cap['memory'])}"
    )
    return "\n".join(lines)
