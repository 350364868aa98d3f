"""TAP_UPLOAD (TAP 1.1 §2.5.7): user VOTables joinable as ``TAP_UPLOAD.<name>``.

``UPLOAD=name,param:part`` names a multipart part of the same request (inline upload);
``UPLOAD=name,https://...`` a table to fetch. A URL under the platform's own public URL (e.g.
a file in the user's WebDAV workspace) is fetched with the user's token; any other URL only if
its host is a public address (no loopback, private or link-local targets). Tables are parsed
with astropy, checked (size, rows, names) and handed to the backend as Arrow tables.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.schema import ColumnMeta, TableMeta
from sciplat.services.tap.storage.base import UPLOAD_SCHEMA

__all__ = [
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_ROWS",
    "UploadSpec",
    "fetch_upload",
    "parse_upload_param",
    "read_upload",
]

MAX_UPLOAD_BYTES = 32 * 2**20
MAX_UPLOAD_ROWS = 1_000_000
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class UploadSpec:
    table: str
    #: The multipart part of an inline upload, or None.
    part: str | None = None
    #: The http(s) URL of a remote upload, or None.
    url: str | None = None


def parse_upload_param(values: list[str]) -> list[UploadSpec]:
    """The UPLOAD parameter(s): ``name,param:part`` pairs separated by ``;``."""
    specs: list[UploadSpec] = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(";"))):
            name, sep, source = item.partition(",")
            name, source = name.strip(), source.strip()
            if not sep or not source:
                raise UsageError(f"UPLOAD must be 'table,param:part', not {item!r}")
            if not _NAME.match(name):
                raise UsageError(f"Upload table name {name!r} is not a valid ADQL identifier")
            if any(s.table.lower() == name.lower() for s in specs):
                raise UsageError(f"Upload table {name!r} given twice")
            if source.startswith("param:"):
                specs.append(UploadSpec(table=name, part=source[len("param:") :]))
            elif source.lower().startswith(("http://", "https://")):
                specs.append(UploadSpec(table=name, url=source))
            else:
                raise UsageError(
                    f"Upload source {source!r} is not supported: send the table inline "
                    "('param:<part>') or give an http(s) URL"
                )
    return specs


def _arrow_column(column: np.ndarray) -> pa.Array:
    mask = np.ma.getmaskarray(column) if np.ma.isMaskedArray(column) else None
    data = np.ma.getdata(column)
    if data.dtype.kind in "SU" or data.dtype == object:
        values = [
            None if (mask is not None and mask[i]) else (v.decode() if isinstance(v, bytes) else v)
            for i, v in enumerate(data.tolist())
        ]
        if any(isinstance(v, list | tuple | np.ndarray) for v in values if v is not None):
            raise UsageError("Variable-length array columns are not supported in uploads")
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
    if data.ndim > 1:
        raise UsageError("Array columns are not supported in uploads")
    return pa.array(data.astype(data.dtype.newbyteorder("=")), mask=mask)


def read_upload(name: str, content: bytes) -> tuple[TableMeta, pa.Table]:
    """Parse one uploaded VOTable into its TAP_UPLOAD metadata and an Arrow table."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise UsageError(f"Upload {name!r} is larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
    from astropy.io.votable import parse_single_table

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            votable = parse_single_table(io.BytesIO(content), verify="ignore")
    except Exception as exc:
        raise UsageError(f"Upload {name!r} is not a readable VOTable: {exc}"[:300]) from exc
    table = votable.array
    if len(table) > MAX_UPLOAD_ROWS:
        raise UsageError(f"Upload {name!r} has more than {MAX_UPLOAD_ROWS} rows")
    columns: list[ColumnMeta] = []
    arrays: list[pa.Array] = []
    seen: set[str] = set()
    for index, field in enumerate(votable.fields):
        column_name = field.name or field.ID or f"col{index}"
        if not _NAME.match(column_name):
            column_name = re.sub(r"\W", "_", column_name)
            if not column_name[:1].isalpha():
                column_name = f"c_{column_name}"
        if column_name.lower() in seen:
            raise UsageError(f"Upload {name!r} has two columns named {column_name!r}")
        seen.add(column_name.lower())
        array = _arrow_column(table[table.dtype.names[index]])
        datatype = field.datatype if field.datatype != "bit" else "boolean"
        arraysize = field.arraysize if datatype in ("char", "unicodeChar") else None
        if datatype in ("char", "unicodeChar"):
            datatype, arraysize = "char", "*"
        elif datatype in ("floatComplex", "doubleComplex"):
            raise UsageError(f"Upload {name!r}: complex column {column_name!r} not supported")
        columns.append(
            ColumnMeta(
                name=column_name,
                datatype=datatype,
                arraysize=arraysize,
                unit=str(field.unit) if field.unit is not None else None,
                ucd=field.ucd,
                xtype=field.xtype,
                column_index=index,
            )
        )
        arrays.append(array)
    meta = TableMeta(schema_name=UPLOAD_SCHEMA, name=name, columns=columns)
    return meta, pa.table(arrays, names=[c.name for c in columns])


def _public_host(host: str) -> bool:
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return False
    return True


async def fetch_upload(spec: UploadSpec, http, platform_url: str, token: str) -> bytes:
    """Fetch a URL upload (size-limited; own-platform URLs with the user's token)."""
    from urllib.parse import urlsplit

    import httpx

    url = spec.url or ""
    own = url.startswith(platform_url.rstrip("/") + "/")
    host = urlsplit(url).hostname or ""
    if not own and not _public_host(host):
        raise UsageError(
            f"Upload URL {url!r} is not allowed: only public hosts or this platform's own files"
        )
    headers = {"Authorization": f"Bearer {token}"} if own else {}
    try:
        async with http.stream("GET", url, headers=headers, timeout=30.0) as response:
            if response.status_code != 200:
                raise UsageError(f"Upload URL {url!r} answered HTTP {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise UsageError(
                        f"Upload {spec.table!r} is larger than {MAX_UPLOAD_BYTES // 2**20} MiB"
                    )
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise UsageError(f"Upload URL {url!r} could not be read: {exc}") from exc
    return b"".join(chunks)
