"""Result writers: every format reads back (astropy, pyarrow) with the same rows and metadata,
VOTables pass ``stilts votlint``, MAXREC overflow is flagged, and the vectorised BINARY2
encoder agrees with astropy's own BINARY2 writer byte for byte."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table

from sciplat.services.tap.adql import translate
from sciplat.services.tap.votable.binary2 import encode_batch
from sciplat.services.tap.votable.fields import VOField, fields_for
from sciplat.services.tap.votable.formats import FORMATS, output_format
from sciplat.services.tap.votable.stream import ResultStream, RowLimiter

QUERY = (
    "SELECT TOP 50 objectId, coord_ra, g_psfFlux, refExtendedness, detect_isPrimary, tract, "
    "shape_flag, POINT(coord_ra, coord_dec) AS pos, 'a<b&c' AS txt, "
    "CAST(NULL AS VARCHAR(4)) AS empty FROM dp1.Object ORDER BY objectId"
)


def write(
    catalog, schema, fmt_name: str, query: str = QUERY, maxrec: int = 40
) -> tuple[bytes, ResultStream]:
    translation = translate(query, schema, catalog.target(), maxrec=maxrec)
    result = catalog.execute(translation.sql)
    stream = ResultStream(
        fields_for(translation.fields, result.schema),
        RowLimiter(result.batches, maxrec),
        {"QUERY": query},
    )
    return b"".join(output_format(fmt_name).write(stream)), stream


def expected(catalog) -> dict:
    cur = catalog._cursor()
    try:
        return cur.execute(
            'SELECT objectId, g_psfFlux, detect_isPrimary FROM dp1."Object" ORDER BY objectId '
            "LIMIT 40"
        ).fetchnumpy()
    finally:
        cur.close()


def read_back(data: bytes, name: str) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("votable"):
            return parse_single_table(io.BytesIO(data)).to_table()
        if name == "parquet":
            return Table(pq.read_table(io.BytesIO(data)).to_pydict())
        if name == "fits":
            return Table.read(io.BytesIO(data), format="fits")
        return Table.read(data.decode(), format="ascii.csv" if name == "csv" else "ascii.tab")


@pytest.mark.parametrize("fmt", [f.name for f in FORMATS])
def test_round_trip(sample_catalog, tap_schema, fmt: str) -> None:
    data, stream = write(sample_catalog, tap_schema, fmt)
    assert stream.rows.overflow and stream.rows.rows == 40
    table = read_back(data, fmt)
    truth = expected(sample_catalog)
    assert len(table) == 40
    assert list(table.colnames[:3]) == ["objectId", "coord_ra", "g_psfFlux"]
    assert np.array_equal(np.asarray(table["objectId"]), truth["objectId"])
    flux = np.ma.filled(np.ma.asarray(table["g_psfFlux"], dtype=float), np.nan)
    mask = np.ma.getmaskarray(truth["g_psfFlux"])
    assert mask.any()
    assert np.all(np.isnan(flux[mask]))
    assert np.allclose(flux[~mask], np.ma.getdata(truth["g_psfFlux"])[~mask], rtol=1e-6)
    assert all(str(v) == "a<b&c" for v in table["txt"])
    if fmt.startswith("votable"):
        assert b'name="QUERY_STATUS" value="OVERFLOW"' in data
        assert table["coord_ra"].unit == "deg"
        primary = np.asarray(table["detect_isPrimary"])
        assert np.array_equal(primary.astype(bool), truth["detect_isPrimary"].astype(bool))
        assert list(table["pos"][0]) == pytest.approx([table["coord_ra"][0], 0], abs=90)
    if fmt == "parquet":
        meta = pq.ParquetFile(io.BytesIO(data)).metadata.metadata
        assert b"OVERFLOW" in meta[b"IVOA.VOTable-Parquet.content"]
        assert meta[b"IVOA.VOTable-Parquet.version"] == b"1.0"


@pytest.mark.parametrize("fmt", ["votable", "votable/td"])
def test_votlint(sample_catalog, tap_schema, tmp_path, fmt: str) -> None:
    data, _ = write(sample_catalog, tap_schema, fmt)
    path = tmp_path / "result.xml"
    path.write_bytes(data)
    out = subprocess.run(
        ["stilts", "votlint", "validate=true", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if re.match(r"^(ERROR|WARNING)", line)
    ]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_empty_result_and_maxrec_zero(sample_catalog, tap_schema) -> None:
    data, stream = write(
        sample_catalog,
        tap_schema,
        "votable",
        "SELECT objectId FROM dp1.Object WHERE objectId < 0",
        maxrec=10,
    )
    assert not stream.rows.overflow and len(read_back(data, "votable")) == 0
    data, stream = write(
        sample_catalog, tap_schema, "votable", "SELECT objectId FROM dp1.Object", maxrec=0
    )
    assert stream.rows.overflow and len(read_back(data, "votable")) == 0


def test_binary2_matches_astropy(sample_catalog) -> None:
    """Our encoder and astropy's BINARY2 writer produce the same bytes for the same table."""
    from astropy.io.votable.tree import Field, Resource, VOTableFile
    from astropy.io.votable.tree import Table as VOTable

    rng = np.random.default_rng(1)
    n = 500
    arrays = {
        "l": pa.array(rng.integers(-(2**40), 2**40, n), mask=rng.random(n) < 0.1),
        "d": pa.array(rng.normal(size=n)),
        "f": pa.array(rng.normal(size=n).astype("f4"), mask=rng.random(n) < 0.2),
        "i": pa.array(rng.integers(-1000, 1000, n).astype("i4")),
        "s": pa.array([None if k % 7 == 0 else "x" * (k % 5) for k in range(n)]),
    }
    fields = [
        VOField("l", "long"),
        VOField("d", "double"),
        VOField("f", "float"),
        VOField("i", "int"),
        VOField("s", "char", "*"),
    ]
    ours = encode_batch(pa.record_batch(list(arrays.values()), names=list(arrays)), fields)

    votable = VOTableFile(version="1.4")
    resource = Resource()
    votable.resources.append(resource)
    table = VOTable(votable)
    resource.tables.append(table)
    table.fields.extend(
        Field(votable, name=f.name, datatype=f.datatype, arraysize=f.arraysize) for f in fields
    )
    table.create_arrays(n)
    for name, array in arrays.items():
        values = array.to_numpy(zero_copy_only=False)
        mask = array.is_null().to_numpy(zero_copy_only=False)
        if name == "s":
            values = np.array(["" if v is None else v for v in values], dtype=object)
        table.array[name] = values
        table.array.mask[name] = mask
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        votable.to_xml(buffer, tabledata_format="binary2")
    stream = re.search(rb"<STREAM encoding=\"base64\">(.*?)</STREAM>", buffer.getvalue(), re.S)
    theirs = base64.b64decode(stream[1])

    # Null cells are zero/NaN filled by us and arbitrary by astropy: compare the masks and the
    # non-null cells by decoding both with astropy.
    def decode(blob: bytes) -> Table:
        doc = buffer.getvalue().replace(stream[1], base64.b64encode(blob))
        return parse_single_table(io.BytesIO(doc)).to_table()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = decode(ours), decode(theirs)
    for name in arrays:
        assert np.array_equal(np.ma.getmaskarray(a[name]), np.ma.getmaskarray(b[name])), name
        valid = ~np.ma.getmaskarray(b[name])
        assert np.array_equal(np.asarray(a[name])[valid], np.asarray(b[name])[valid]), name
    assert len(ours) == len(theirs)


def _astropy_decode(fields: list[VOField], blob: bytes) -> Table:
    """Parse *blob* (BINARY2 rows) with astropy, under FIELDs declared like ours."""
    header = "".join(
        f'<FIELD name="{f.name}" datatype="{f.datatype}"'
        + (f' arraysize="{f.arraysize}"' if f.arraysize else "")
        + "/>"
        for f in fields
    )
    doc = (
        '<?xml version="1.0"?><VOTABLE version="1.4" '
        'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
        f'{header}<DATA><BINARY2><STREAM encoding="base64">{base64.b64encode(blob).decode()}'
        "</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_single_table(io.BytesIO(doc.encode())).to_table()


@pytest.mark.parametrize("offset", [0, 5])
def test_binary2_every_cell_kind(offset: int) -> None:
    """Every datatype/arraysize the encoder handles, with nulls, on a sliced batch (Arrow
    offsets): astropy reads back the same values and null masks."""
    rng = np.random.default_rng(7)
    n = 300
    null = rng.random(n) < 0.15
    words = ["", "a", "visit_image", "raw", "longer than eight"]
    text = [words[k % len(words)] for k in range(n)]
    wide = [f"{t}é" if k % 3 else t for k, t in enumerate(text)]
    columns = {
        "b": (pa.array(rng.random(n) < 0.5, mask=null), VOField("b", "boolean")),
        "u": (pa.array(rng.integers(0, 255, n).astype("u1")), VOField("u", "unsignedByte")),
        "h": (pa.array(rng.integers(-99, 99, n).astype("i2"), mask=null), VOField("h", "short")),
        "s": (pa.array(text, mask=null), VOField("s", "char", "*")),
        "w": (pa.array(wide), VOField("w", "unicodeChar", "*")),
        "wa": (pa.array(text), VOField("wa", "unicodeChar", "*")),
        "band": (pa.array(["ugrizy"[k % 6] for k in range(n)]), VOField("band", "char", "*")),
        "c4": (pa.array(["abcdefgh"[: k % 9] for k in range(n)]), VOField("c4", "char", "4")),
        "pt": (
            pa.array([[float(k), -float(k)] for k in range(n)], mask=null),
            VOField("pt", "double", "2"),
        ),
        "poly": (
            pa.array([[0.5] * (k % 4 * 2) for k in range(n)]),
            VOField("poly", "double", "*"),
        ),
        "d": (pa.array(rng.normal(size=n), mask=null), VOField("d", "double")),
    }
    batch = pa.record_batch([c for c, _ in columns.values()], names=list(columns))
    fields = [f for _, f in columns.values()]
    sliced = batch.slice(offset, n - 2 * offset)
    table = _astropy_decode(fields, encode_batch(sliced, fields))
    assert len(table) == sliced.num_rows
    for name, (array, _field) in columns.items():
        want = array.slice(offset, sliced.num_rows).to_pylist()
        got = table[name]
        for row, value in enumerate(want):
            if name in ("s", "w", "wa", "band"):
                assert (got[row] or "") == (value or ""), (name, row)
            elif name == "c4":
                assert got[row] == value[:4], (name, row)
            elif value is None:
                assert np.ma.getmaskarray(got)[row].all(), (name, row)
            elif name in ("pt", "poly"):
                assert list(np.ma.getdata(got[row])) == value, (name, row)
            else:
                assert got[row] == value, (name, row)


def test_binary2_document_is_rfc2045_base64(sample_catalog, tap_schema) -> None:
    """The STREAM is base64 in 76-character lines, and decodes to whole rows."""
    data, _ = write(sample_catalog, tap_schema, "votable", maxrec=40)
    body = re.search(rb'<STREAM encoding="base64">\n(.*?)</STREAM>', data, re.S)[1]
    lines = body.split(b"\n")
    assert all(len(line) == 76 for line in lines[:-2]) and len(lines[-2]) <= 76
    assert lines[-1] == b""
    assert len(base64.b64decode(body)) > 40


def test_prefetched_stream_propagates_and_stops() -> None:
    """The producer thread hands chunks over in order, re-raises the writer's error in the
    consumer, and, when the consumer leaves early, stops and runs the writer's ``finally``."""
    import threading
    import time

    from sciplat.services.tap.votable.stream import prefetched

    assert list(prefetched(iter([b"a", b"b", b"c"]))) == [b"a", b"b", b"c"]

    def failing():
        yield b"x"
        raise ValueError("broken mid-stream")

    with pytest.raises(ValueError, match="mid-stream"):
        list(prefetched(failing()))

    finished = threading.Event()

    def endless():
        try:
            while True:
                yield b"y" * 10
        finally:
            finished.set()

    consumer = prefetched(endless())
    assert next(consumer) == b"y" * 10
    consumer.close()  # the client went away
    deadline = time.monotonic() + 5
    while not finished.is_set():
        assert time.monotonic() < deadline, "the producer kept running"
        time.sleep(0.05)
