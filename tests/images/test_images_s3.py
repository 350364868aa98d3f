"""The image services over a Butler whose datastore is in S3 (moto's S3 server on loopback):
DataLink downloads are streamed from the object store and SODA cutouts read only the byte
ranges they need (HTTP range requests), never the whole object."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from astropy.io import fits
from imagetools import serve_images

from support.net import free_port

pytestmark = pytest.mark.integration

BUCKET = "sciplat-images"
PREFIX = "dp1"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        mp.setenv("AWS_ACCESS_KEY_ID", "sciplat-test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "sciplat-test-secret")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="module")
def traffic(s3_endpoint) -> list[dict]:
    """Every GetObject the services' S3 client sends (key and Range)."""
    from lsst.resources import ResourcePath

    calls: list[dict] = []
    client = ResourcePath(f"s3://{BUCKET}/{PREFIX}/").client

    def record(params, **kwargs):
        calls.append({"key": params.get("Key"), "range": params.get("Range")})

    client.meta.events.register("provide-client-params.s3.GetObject", record)
    yield calls
    client.meta.events.unregister("provide-client-params.s3.GetObject", record)


def _local_file(image_dataset: Path, key: str) -> Path:
    return image_dataset / "butler" / key.split(f"{PREFIX}/", 1)[1]


@pytest.fixture(scope="module")
def s3_images(test_hub, image_dataset, visit_image, s3_endpoint, traffic, tmp_path_factory):
    """The services over a copy of the data preview's repository whose files are in S3."""
    import boto3

    source = image_dataset / "butler"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    # The visit image, its raws and the calibrations: what its links and cutouts touch.
    names = (str(visit_image["lsst_visit"]), visit_image["obs_id"])
    for path in sorted(source.rglob("*.fits")):
        relative = path.relative_to(source).as_posix()
        if relative.startswith("SimCam/calib/") or any(n in path.name for n in names):
            s3.upload_file(str(path), BUCKET, f"{PREFIX}/{relative}")
    data_dir = tmp_path_factory.mktemp("images-s3")
    repo = data_dir / "dataset" / "butler"
    repo.mkdir(parents=True)
    shutil.copy(source / "gen3.sqlite3", repo)
    config = yaml.safe_load((source / "butler.yaml").read_text())
    config["datastore"]["root"] = f"s3://{BUCKET}/{PREFIX}/"
    config["registry"]["db"] = f"sqlite:///{repo}/gen3.sqlite3"
    (repo / "butler.yaml").write_text(yaml.safe_dump(config))
    os.symlink(image_dataset / "catalog", data_dir / "dataset" / "catalog")
    with serve_images(test_hub, data_dir) as server:
        yield server


def _session(tokens) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['alice']}"
    return session


def test_links_and_streamed_downloads_from_s3(s3_images, tokens, visit_image, image_dataset):
    from pyvo.dal.adhoc import DatalinkResults

    session = _session(tokens)
    did = visit_image["obs_publisher_did"]
    results = DatalinkResults.from_result_url(
        f"{s3_images.api}/datalink/links?ID={requests.utils.quote(did, safe='')}",
        session=session,
    )
    semantics = sorted(r.semantics for r in results)
    assert semantics.count("#auxiliary") == 2
    for expected in ("#this", "#cutout", "#bias", "#flat", "#progenitor"):
        assert expected in semantics, semantics
    assert not [r.error_message for r in results if r.error_message]

    this = next(r for r in results if r.semantics == "#this")
    download = requests.get(this.access_url, timeout=60)  # signed: no token needed
    assert download.status_code == 200, download.text
    from lsst.daf.butler import Butler

    with Butler.from_config(str(image_dataset / "butler")) as butler:
        local = Path(butler.getURI(butler.get_dataset(visit_image["lsst_dataset_id"])).ospath)
    assert download.content == local.read_bytes()
    assert int(download.headers["Content-Length"]) == local.stat().st_size

    mask = next(r for r in results if r.semantics == "#auxiliary" and "mask" in r.description)
    plane = requests.get(mask.access_url, timeout=60).content
    with fits.open(io.BytesIO(plane)) as hdul, fits.open(local) as original:
        assert np.array_equal(hdul["MASK"].data, original["MASK"].data)


def test_cutouts_from_s3_read_only_the_ranges_they_need(
    s3_images, tokens, visit_image, image_dataset, traffic
):
    from lsst.daf.butler import Butler

    with Butler.from_config(str(image_dataset / "butler")) as butler:
        ref = butler.get_dataset(visit_image["lsst_dataset_id"])
        local = Path(butler.getURI(ref).ospath)
    traffic.clear()
    ra, dec = visit_image["s_ra"], visit_image["s_dec"]
    response = _session(tokens).get(
        f"{s3_images.api}/soda/sync",
        params={"ID": visit_image["obs_publisher_did"], "CIRCLE": f"{ra} {dec} {50 * 0.2 / 3600}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    with fits.open(io.BytesIO(response.content)) as cut, fits.open(local) as original:
        for name in ("IMAGE", "MASK", "VARIANCE"):
            x0, y0 = -cut[name].header["LTV1"], -cut[name].header["LTV2"]
            ny, nx = cut[name].data.shape
            assert 90 <= nx <= 110 and 90 <= ny <= 110
            assert np.array_equal(
                cut[name].data, original[name].data[y0 : y0 + ny, x0 : x0 + nx], equal_nan=True
            )

    reads = [c for c in traffic if c["key"].endswith(local.name)]
    assert reads, traffic
    assert all(c["range"] for c in reads), "a GetObject without a Range reads the whole object"
    fetched = 0
    for call in reads:
        start, end = call["range"].removeprefix("bytes=").split("-")
        fetched += int(end) - int(start) + 1
    assert fetched < local.stat().st_size / 2, (fetched, local.stat().st_size)


def test_unknown_and_missing_files_in_s3(s3_images, tokens, obscore_rows, visit_image):
    session = _session(tokens)
    # A dataset the registry knows whose file was never uploaded: a clear 404, never a 500.
    other = next(
        r
        for r in obscore_rows
        if r["calib_level"] == 2 and str(r["lsst_visit"]) != str(visit_image["lsst_visit"])
    )
    response = session.get(
        f"{s3_images.api}/soda/sync",
        params={
            "ID": other["obs_publisher_did"],
            "CIRCLE": f"{other['s_ra']} {other['s_dec']} 0.01",
        },
        timeout=60,
    )
    assert response.status_code == 404, response.text
    assert "missing" in response.text
