"""Portal pieces without servers: signed channels, the hub registration, the result cache's
paging/filters (no SQL from users), plot axes, TAP error positions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from traitlets.config import Config

from sciplat.config import Settings
from sciplat.services.common.errors import NotFoundError, UsageError
from sciplat.services.portal import plots
from sciplat.services.portal.channels import DEFAULT_NONCE, ChannelBus, ChannelSigner, Subscriber
from sciplat.services.portal.results import Filter, ResultCache
from sciplat.services.portal.tapclient import error_position


def test_signed_channels():
    signer = ChannelSigner("secret")
    channel = signer.make("alice", DEFAULT_NONCE)
    assert signer.user_of(channel) == "alice"
    assert signer.make("alice", DEFAULT_NONCE) == channel
    assert signer.user_of(channel.replace("alice", "bob")) is None
    assert ChannelSigner("other").user_of(channel) is None
    assert signer.user_of("plainchannel") is None


def test_bus_keeps_users_apart_and_replays():
    bus = ChannelBus()
    bus.to_viewers("alice", "c", {"kind": "table"})  # no page yet: kept
    alice, bob = Subscriber("viewer"), Subscriber("viewer")
    bus.subscribe("alice", "c", alice)
    bus.subscribe("bob", "c", bob)
    assert alice.queue.qsize() == 1 and bob.queue.qsize() == 0
    assert bus.to_viewers("bob", "c", {"kind": "image"}) == 1
    assert alice.queue.qsize() == 1 and bob.queue.qsize() == 1


def test_hub_registration(tmp_path):
    from sciplat.services.portal import hubconf

    settings = Settings(data_dir=tmp_path)
    c = Config()
    c.JupyterHub.services = []
    c.JupyterHub.load_roles = []
    c.Spawner.environment = {}
    hubconf.configure(c, settings)
    (service,) = c.JupyterHub.services
    assert service["name"] == "portal"
    assert service["url"] == f"http://127.0.0.1:{settings.ports.portal}"
    assert "custom:tap:read" in service["oauth_client_allowed_scopes"]
    (role,) = c.JupyterHub.load_roles
    assert role["scopes"] == ["access:services!service=portal"]
    assert set(role["groups"]) == {
        n for n, g in settings.groups.items() if "custom:portal:use" in g.scopes
    }
    env = c.Spawner.environment
    assert env["FIREFLY_URL"].endswith("/services/portal")

    class Spawner:
        class user:
            name = "alice"

    channel = env["FIREFLY_CHANNEL"](Spawner)
    from sciplat.services.portal.channels import channel_secret

    assert ChannelSigner(channel_secret(settings)).user_of(channel) == "alice"


@pytest.fixture
def cache(tmp_path: Path) -> tuple[ResultCache, str]:
    path = tmp_path / "t.parquet"
    n = 5000
    pq.write_table(
        pa.table(
            {
                "id": np.arange(n),
                "x": np.linspace(0, 1, n),
                "name": [f"s{i}" for i in range(n)],
                "weird col": np.ones(n),
            }
        ),
        path,
    )
    cache = ResultCache(tmp_path / "cache", hot=1)
    info = cache.add("alice", path, title="t", source="upload")
    yield cache, info.id
    cache.close()


def test_cache_paging_sorting_filters(cache):
    c, rid = cache
    page = c.page("alice", rid, offset=4990, limit=100)
    assert page["total"] == 5000 and [r[0] for r in page["rows"]] == list(range(4990, 5000))
    top = c.page("alice", rid, limit=3, sort="x", descending=True)
    assert [r[0] for r in top["rows"]] == [4999, 4998, 4997]
    f = [Filter("x", "between", [0.1, 0.2]), Filter("name", "like", "%9")]
    filtered = c.page("alice", rid, filters=f, limit=1000)
    assert filtered["total"] == len(filtered["rows"]) > 0
    assert all(0.1 <= r[1] <= 0.2 and r[2].endswith("9") for r in filtered["rows"])
    # values are parameters, column names are checked: no SQL gets through
    assert c.page("alice", rid, filters=[Filter("name", "=", "x' OR 1=1 --")])["total"] == 0
    with pytest.raises(UsageError, match="No column"):
        c.page("alice", rid, filters=[Filter('x" OR 1=1 --', "=", 1)])
    with pytest.raises(UsageError, match="Unknown filter operator"):
        Filter.parse({"column": "x", "op": "; DROP"})
    assert c.page("alice", rid, filters=[Filter("weird col", "=", 1)])["total"] == 5000
    stats = c.stats("alice", rid, "x")
    assert stats["min"] == 0 and stats["max"] == 1 and stats["rows"] == 5000
    with pytest.raises(UsageError):
        c.page("alice", rid, limit=100_000)
    with pytest.raises(NotFoundError):
        c.page("bob", rid)  # results are per user
    with pytest.raises(NotFoundError):
        c.info("alice", "../../etc")


def test_plot_axes_and_raster():
    table = pa.table({"g": [20.0, 21.0, np.nan], "r": [19.5, 20.0, 21.0], "s": ["a", "b", "c"]})
    assert plots.axis_columns("g - r") == ["g", "r"]
    assert plots.evaluate(table, "g - r")[:2].tolist() == [0.5, 1.0]
    with pytest.raises(UsageError, match="not numeric"):
        plots.evaluate(table, "s")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50_000), rng.normal(size=50_000)
    png, meta = plots.raster(x, y, width=200, height=100)
    assert png[:4] == b"\x89PNG" and meta["points"] == 50_000
    hist = plots.histogram(np.array([1.0, 2.0, 2.0, np.nan]), bins=2)
    assert hist["counts"] == [1, 2] and hist["n"] == 3


def test_error_position():
    assert error_position("Unknown column 'x' (line 2, column 8)") == {"line": 2, "column": 8}
    assert error_position("no position") is None


def test_image_surveys_from_hips_list():
    from sciplat.services.portal.app import image_surveys

    listing = (
        "# survey g\ncreator_did = ivo://x/g\ndataproduct_type = image\n\nhips_frame = equatorial\n"
        "hips_service_url = http://h/services/api/hips/g\n"
        "creator_did = ivo://x/object\ndataproduct_type = catalog\n"
        "hips_service_url = http://h/services/api/hips/object\n"
        "creator_did = ivo://x/r\nhips_service_url = http://h/services/api/hips/r/\n"
    )
    assert image_surveys(listing) == ["g", "r"]


def test_workspace_paths_and_bands():
    from sciplat.services.portal.service import _band
    from sciplat.services.portal.workspace import clean_path

    assert clean_path("/tables//x.csv") == "tables/x.csv" and clean_path("") == ""
    for bad in ("../bob", "a/../../b", "a/./b", "a\x00b"):
        with pytest.raises(UsageError, match="Bad workspace path"):
            clean_path(bad)
    with pytest.raises(UsageError, match="file name"):
        clean_path("/", allow_root=False)
    lo, hi = (float(v) for v in _band("g").split())
    assert lo == hi and 4.0e-7 < lo < 5.52e-7
    assert _band("5e-7 6e-7") == "5e-07 6e-07"
    for bad in ("q", "500nm", "1 2 3"):
        with pytest.raises(UsageError, match="Bad band"):
            _band(bad)


def test_workspace_refusals_read_plainly():
    import httpx

    from sciplat.services.common.errors import QuotaExceededError
    from sciplat.services.portal.workspace import _raise_for

    page = (
        "<html><head><title>507 Insufficient Storage</title></head><body><h1>507 Insufficient "
        "Storage</h1><p>Quota exceeded: 45 bytes do not fit in the 0 bytes left in this "
        "workspace</p><hr/><a href='https://github.com/mar10/wsgidav/'>WsgiDAV/4.4.0</a> - "
        "2026-11-22 06:54:46.492980</body></html>"
    )
    with pytest.raises(QuotaExceededError) as refused:
        _raise_for(httpx.Response(507, text=page), "x.csv")
    assert refused.value.message == (
        "Quota exceeded: 45 bytes do not fit in the 0 bytes left in this workspace"
    )


def test_job_links_and_readable_names():
    from sciplat.services.portal.service import job_id_of, readable_name

    assert job_id_of("OKI67yDYBUADiGfx") == "OKI67yDYBUADiGfx"
    base = "http://127.0.0.1:8000/services/api/tap/async"
    assert job_id_of(f"{base}/abc_12-x") == "abc_12-x"
    assert job_id_of(f" {base}/abc/results/result ") == "abc"
    assert job_id_of(f"{base}/abc/phase") == "abc"
    for bad in ("", "a b", "../x", "ftp://h/tap/async/abc", "http://h/tap/sync/abc", "x" * 65):
        with pytest.raises(UsageError, match="neither a TAP job id nor a TAP job URL"):
            job_id_of(bad)
    link = "http://h/services/api/datalink/links?ID=ivo%3A%2F%2Fsciplat%2Fdp%3F0025e953&RESPONSEFORMAT=x"
    assert readable_name(link) == "ivo://sciplat/dp?0025e953"
    assert readable_name("http://h/files/calexp%20g.fits?x=1") == "calexp g.fits"
    assert readable_name("http://h/", "image") == "image"


def test_bokeh_items_points_raster_histogram():
    from sciplat.services.portal import bokehplots

    spec = bokehplots.PlotSpec("g - r", "r", invert_y=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30_000), rng.normal(size=30_000)
    x[0] = np.nan
    small = bokehplots.scatter_item(x[:500], y[:500], spec, kind="cmd")
    assert small["renderer"] == "points" and small["n"] == 499 and small["kind"] == "cmd"
    big = bokehplots.scatter_item(x, y, spec)
    assert big["renderer"] == "raster" and big["n"] == 29_999
    text = json.dumps(big["item"])
    assert '"highlight"' in text and "selectiongeometry" in text and "rangesupdate" in text
    hist = bokehplots.histogram_item(y, bokehplots.PlotSpec("r", "count"), bins=20)
    assert hist["n"] == 30_000 and hist["y_range"][1] > 0
    with pytest.raises(UsageError, match="width"):
        bokehplots.PlotSpec("a", "b", width=10)
    with pytest.raises(UsageError, match="No finite"):
        bokehplots.scatter_item(np.array([np.nan]), np.array([1.0]), spec)
