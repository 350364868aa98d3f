"""Your own tables (MyDB) from a lab or a script.

Tables live in your schema ``user_<you>`` (or ``group_<group>``) of the catalog database and
join with the survey tables in ADQL::

    import sciplat.mydb
    sciplat.mydb.upload(my_astropy_table, "targets")          # -> user_alice.targets
    sciplat.mydb.list()
    sciplat.mydb.describe("targets")
    sciplat.mydb.share("targets", "commissioning")            # read-only for the group
    tap = sciplat.get_tap_service()
    tap.search("SELECT t.*, o.r_psfFlux FROM user_alice.targets t JOIN dp1.Object o "
               "ON o.objectId = t.objectid")
    sciplat.mydb.from_job(job_url_or_id, "bright")            # an async TAP job's result
    sciplat.mydb.drop("targets")

Outside a lab, pass ``base_url=`` and ``token=`` as for :func:`sciplat.get_tap_service`.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from sciplat.client import discovery

__all__ = ["MyDBError", "describe", "drop", "from_job", "list", "share", "unshare", "upload"]

_list = list


class MyDBError(RuntimeError):
    """The service refused a request; the message is the service's own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status


def _call(method: str, path: str, *, base_url: str | None, token: str | None, **kwargs: Any):
    doc = discovery(base_url, token=token)
    with doc.http_client(timeout=600) as client:
        response = client.request(method, f"{doc.url('mydb')}{path}", **kwargs)
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise MyDBError(response.status_code, message)
    return response.json()


def _parquet_bytes(table: Any) -> bytes:
    """An astropy Table, pandas DataFrame or pyarrow Table as Parquet (units kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if hasattr(table, "write") and hasattr(table, "colnames"):  # astropy writes to paths only
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "table.parquet"
            table.write(path, format="parquet")
            return path.read_bytes()
    buffer = io.BytesIO()
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(table, buffer)
    return buffer.getvalue()


def upload(
    table: Any,
    name: str,
    *,
    overwrite: bool = False,
    base_url: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Store *table* as ``name`` (or ``schema.name``); returns the table's description.

    *table* is an astropy ``Table``, a pandas ``DataFrame``, a pyarrow ``Table``, or the path
    of a Parquet, VOTable or CSV file.
    """
    if isinstance(table, str | bytes) or hasattr(table, "__fspath__"):
        with open(table, "rb") as handle:
            body = handle.read()
    else:
        body = _parquet_bytes(table)
    return _call(
        "PUT",
        f"/tables/{name}",
        base_url=base_url,
        token=token,
        params={"overwrite": str(overwrite).lower()},
        content=body,
    )


def from_job(
    job: str,
    name: str,
    *,
    overwrite: bool = False,
    base_url: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Store the result of one of your completed async TAP jobs (id or URL) as ``name``."""
    job_id = job.rstrip("/").rsplit("/", 1)[-1]
    return _call(
        "POST",
        f"/tables/{name}/from-job",
        base_url=base_url,
        token=token,
        params={"job": job_id, "overwrite": str(overwrite).lower()},
    )


def list(*, base_url: str | None = None, token: str | None = None) -> _list[dict[str, Any]]:
    """The tables you can read: yours, your groups', and those shared with you."""
    return _call("GET", "/tables", base_url=base_url, token=token)["tables"]


def describe(name: str, *, base_url: str | None = None, token: str | None = None) -> dict:
    """A table's columns, size, owner and shares."""
    return _call("GET", f"/tables/{name}", base_url=base_url, token=token)


def drop(name: str, *, base_url: str | None = None, token: str | None = None) -> None:
    """Delete one of your tables (or one of your group schema's)."""
    _call("DELETE", f"/tables/{name}", base_url=base_url, token=token)


def share(name: str, group: str, *, base_url: str | None = None, token: str | None = None) -> dict:
    """Let the members of *group* read your table (they cannot change or drop it)."""
    return _call("PUT", f"/tables/{name}/shares/{group}", base_url=base_url, token=token)


def unshare(
    name: str, group: str, *, base_url: str | None = None, token: str | None = None
) -> dict:
    """Withdraw a share."""
    return _call("DELETE", f"/tables/{name}/shares/{group}", base_url=base_url, token=token)
