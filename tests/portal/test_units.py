"""Portal pieces without servers: signed channels, the hub registration, the result cache's
paging/filters (no SQL from users), plot axes, TAP error positions."""

from __future__ import annotations

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
