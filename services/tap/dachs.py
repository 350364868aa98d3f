"""GAVO DaCHS on the benchmark's table, for ``sciplat bench tap --vs-dachs``.

Follows the recipe in the project's reference notes: the Debian package ``gavodachs2-server``
(installed on demand; its post-install needs the ``main`` PostgreSQL 15 cluster running), a
resource descriptor with a q3c-indexed table importing a CSV export of the same rows, then
``dachs serve start`` (TAP at http://localhost:8080/tap). Everything started is stopped again;
the imported table is kept for the next run (``dachs drop sciplatbench/q`` removes it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from sciplat.services.tap.bench import wait_until_up

__all__ = ["dachs_server", "imported_resource"]

URL = "http://localhost:8080/tap"
RESOURCE = "sciplatbench"

_RD = """<resource schema="dp1" resdir="sciplatbench">
  <meta name="title">sciplat benchmark objects</meta>
  <meta name="description">The synthetic Object table sciplat's TAP benchmark uses.</meta>
  <meta name="creationDate">2026-01-01T00:00:00Z</meta>
  <meta name="subject">benchmark</meta>
  <meta name="creator.name">sciplat</meta>
  <table id="object" onDisk="True" adql="True" mixin="//scs#q3cindex">
    <column name="objectId" type="bigint" ucd="meta.id;meta.main" required="True"/>
    <column name="coord_ra" type="double precision" unit="deg" ucd="pos.eq.ra;meta.main"/>
    <column name="coord_dec" type="double precision" unit="deg" ucd="pos.eq.dec;meta.main"/>
    <column name="g_psfFlux" type="real" unit="nJy" ucd="phot.flux"/>
  </table>
  <data id="import">
    <sources>object.csv</sources>
    <csvGrammar/>
    <make table="object"/>
  </data>
</resource>
"""


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def _main_cluster_running() -> bool:
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    return any(line.split()[:2] == ["15", "main"] and "online" in line for line in out.splitlines())


def _install(progress: Callable[[str], None]) -> None:
    if shutil.which("dachs"):
        return
    if os.geteuid() != 0:
        raise RuntimeError("installing gavodachs2-server needs root (apt-get)")
    progress("installing gavodachs2-server (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "install", "-y", "-q", "gavodachs2-server"], env=env, timeout=1800)
    _run(["dpkg", "--configure", "-a"], env=env, timeout=600)


@contextlib.contextmanager
def imported_resource(
    resource: str, rd: str, export: Callable[[Path], None], progress: Callable[[str], None]
) -> Iterator[None]:
    """DaCHS installed, the ``main`` PostgreSQL cluster up and *resource*'s descriptor *rd*
    imported with the rows *export* writes to ``object.csv``, for the ``with`` block.

    DaCHS imports slowly (its grammar parses the CSV in Python): the imported table is kept, and
    imported again only when the rows or the descriptor differ from the last import's.
    """
    started_cluster = False
    if not _main_cluster_running():
        _run(["pg_ctlcluster", "15", "main", "start"], timeout=120)
        started_cluster = True
    try:
        _install(progress)
        inputs = Path(os.environ.get("GAVO_INPUTSDIR", "/var/gavo/inputs")) / resource
        inputs.mkdir(parents=True, exist_ok=True)
        progress("exporting the table for DaCHS")
        export(inputs / "object.csv")
        (inputs / "q.rd").write_text(rd)
        if _has_user("gavo"):
            shutil.chown(inputs, "gavo", "gavo")
        rows_digest = hashlib.sha256((inputs / "object.csv").read_bytes()).hexdigest()
        digest = rows_digest + hashlib.sha256(rd.encode()).hexdigest()[:16]
        stamp = inputs / "imported.sha256"
        if stamp.exists() and stamp.read_text() == digest:
            progress("DaCHS already holds these rows (same export): dachs imp skipped")
        else:
            stamp.unlink(missing_ok=True)
            progress("dachs imp (q3c index)")
            try:
                _run(["dachs", "imp", f"{resource}/q"], timeout=3600)
            except subprocess.CalledProcessError as exc:
                raise RuntimeError(f"dachs imp failed: {exc.stdout}{exc.stderr}") from exc
            stamp.write_text(digest)
        yield
    finally:
        if started_cluster:
            subprocess.run(["pg_ctlcluster", "15", "main", "stop"], capture_output=True)


@contextlib.contextmanager
def dachs_server(catalog: Path, progress: Callable[[str], None]) -> Iterator[str]:
    """DaCHS serving ``dp1.Object`` from the DuckDB *catalog*; yields its TAP URL."""

    def export(target: Path) -> None:
        con = duckdb.connect(str(catalog), read_only=True)
        try:
            con.execute(
                'COPY (SELECT objectId, coord_ra, coord_dec, g_psfFlux FROM dp1."Object") '
                f"TO '{target}' (HEADER, DELIMITER ',')"
            )
        finally:
            con.close()

    with imported_resource(RESOURCE, _RD, export, progress):
        _run(["dachs", "serve", "start"], timeout=120)
        wait_until_up(f"{URL}/availability", timeout=120)
        try:
            yield URL
        finally:
            subprocess.run(["dachs", "serve", "stop"], capture_output=True, timeout=120)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
