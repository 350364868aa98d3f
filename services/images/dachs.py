"""GAVO DaCHS serving a Simple Cone Search over the same Object rows, for ``sciplat bench images
--vs-dachs``.

The recipe of ``sciplat.services.tap.dachs`` (Debian ``gavodachs2-server``, the ``main``
PostgreSQL 15 cluster, a resource descriptor importing a CSV export), with an ``scsCore``
service over a q3c-indexed copy of the columns our cone search returns at ``VERB=2``. The server
runs in the foreground as a child process of the bench on a free loopback port (its own
``GAVOSETTINGS``, no PID file), so it never touches a DaCHS that ``sciplat bench tap
--vs-dachs`` or anybody else runs on port 8080; it is terminated afterwards. The imported table
is kept for the next run (``dachs drop sciplatimages/q`` removes it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

from sciplat.services.images.catalogdb import connect_catalog
from sciplat.services.scs.cone import ConeCatalog
from sciplat.services.tap.bench import bound_socket, wait_until_up
from sciplat.services.tap.dachs import imported_resource

__all__ = ["dachs_cone_server", "resource_descriptor"]

RESOURCE = "sciplatimages"
SCHEMA = "sciplatimg"

# VOTable datatype (of our cone search's FIELDs) -> PostgreSQL type in the DaCHS table.
_SQL_TYPES = {
    "double": "double precision",
    "float": "real",
    "long": "bigint",
    "int": "integer",
    "short": "smallint",
    "boolean": "boolean",
    "char": "text",
}


def resource_descriptor(catalog: ConeCatalog) -> tuple[str, list[str]]:
    """The RD (table + scsCore service) and the column names it imports, in order."""
    columns = catalog.columns(2)
    special = {
        catalog.id_column: "meta.id;meta.main",
        catalog.ra_column: "pos.eq.ra;meta.main",
        catalog.dec_column: "pos.eq.dec;meta.main",
    }
    lines = []
    for column in columns:
        field = column.field
        attributes = {
            "name": column.name,
            "type": _SQL_TYPES.get(field.datatype, "text"),
            "ucd": special.get(column.name, field.ucd or ""),
            "unit": field.unit or "",
        }
        if column.name in special:
            attributes["required"] = "True"
        text = " ".join(f"{key}={quoteattr(value)}" for key, value in attributes.items() if value)
        lines.append(f"    <column {text}/>")
    body = "\n".join(lines)
    rd = f"""<resource schema="{SCHEMA}" resdir="{RESOURCE}">
  <meta name="title">sciplat Object cone search</meta>
  <meta name="description">The data preview's Object table (sciplat bench images).</meta>
  <meta name="creationDate">2026-01-01T00:00:00Z</meta>
  <meta name="subject">benchmark</meta>
  <meta name="creator.name">sciplat</meta>
  <table id="object" onDisk="True" adql="True" mixin="//scs#q3cindex">
{body}
  </table>
  <data id="import">
    <sources>object.csv</sources>
    <csvGrammar/>
    <make table="object"/>
  </data>
  <service id="cone" allowed="scs.xml">
    <meta name="shortName">sciplat objects</meta>
    <meta name="testQuery.ra">0</meta>
    <meta name="testQuery.dec">0</meta>
    <meta name="testQuery.sr">0.01</meta>
    <scsCore queriedTable="object">
      <FEED source="//scs#coreDescs"/>
    </scsCore>
  </service>
</resource>
"""
    return rd, [c.name for c in columns]


def _export(catalog_path: Path, table: str, names: list[str], target: Path) -> None:
    con = connect_catalog(catalog_path)
    try:
        # A read-only connection without external access cannot COPY TO: fetch, then write.
        import csv

        select = ", ".join(f'"{name}"' for name in names)
        rows = con.execute(f"SELECT {select} FROM {table}").fetchall()
    finally:
        con.close()
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if value is None else _csv_value(value) for value in row])


def _csv_value(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value != value:  # NaN: NULL in DaCHS
        return ""
    return str(value)


@contextlib.contextmanager
def dachs_cone_server(catalog_path: Path, progress: Callable[[str], None]) -> Iterator[str]:
    """DaCHS serving SCS over the Object table of the DuckDB *catalog_path*; yields the cone
    search URL (``.../scs.xml``, takes ``RA``, ``DEC``, ``SR``, ``VERB``)."""
    cone = ConeCatalog(catalog_path)
    try:
        rd, names = resource_descriptor(cone)
    finally:
        cone.close()

    def export(target: Path) -> None:
        _export(catalog_path, cone.table, names, target)

    with imported_resource(RESOURCE, rd, export, progress), _foreground_server(progress) as base:
        yield f"{base}/{RESOURCE}/q/cone/scs.xml"


@contextlib.contextmanager
def _foreground_server(progress: Callable[[str], None]) -> Iterator[str]:
    """``dachs serve start --foreground`` on a free loopback port; yields its root URL."""
    with bound_socket() as sock:  # a free port; released just before DaCHS binds it
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="sciplat-dachs-") as tmp:
        settings = Path(tmp) / "gavo.rc"
        settings.write_text(
            f"[web]\nbindAddress: 127.0.0.1\nserverPort: {port}\nserverURL: {base}\n"
        )
        os.chmod(tmp, 0o755)
        env = {**os.environ, "GAVOSETTINGS": str(settings)}
        progress(f"starting DaCHS on {base}")
        process = subprocess.Popen(
            ["dachs", "serve", "start", "--foreground"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until_up(
                f"{base}/{RESOURCE}/q/cone/scs.xml?RA=0&DEC=0&SR=0.001",
                timeout=120,
                alive=lambda: process.poll() is None,
            )
            yield base
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
