"""Alert archive, filters and the alerts service (SSE stream) of the API service."""

from __future__ import annotations

import json
import struct

import httpx
import pytest
from asgi_lifespan import LifespanManager

from sciplat.pipelines.tasks.alerts import alert_schema
from sciplat.pipelines.tasks.archive import AlertArchive
from sciplat.services.alerts import plugin
from sciplat.services.alerts.filters import FilterError, parse_filter
from sciplat.services.alerts.kafka import wire_format


def _alert(source_id: int, visit: int, snr: float, band: str) -> dict:
    return {
        "diaSourceId": source_id,
        "diaSource": {
            "diaSourceId": source_id,
            "visit": visit,
            "detector": 0,
            "midpointMjdTai": 60800.0,
            "ra": 62.0,
            "dec": -37.0,
            "x": 1.0,
            "y": 2.0,
            "psfNdata": 0,
            "trailNdata": 0,
            "dipoleNdata": 0,
            "timeProcessedMjdTai": 60800.1,
            "bboxSize": 9,
            "snr": snr,
            "band": band,
        },
        "cutoutDifference": b"SIMPLE  =                    T",
    }


def _write(root, visit: int, alerts: list[dict]) -> None:
    AlertArchive(root).write(visit, 0, alerts, alert_schema())


def test_filters() -> None:
    alert = _alert(1, 10, 12.0, "r")
    assert parse_filter("diaSource.snr > 10 AND diaSource.band == 'r'")(alert)
    assert not parse_filter("diaSource.snr > 20")(alert)
    assert not parse_filter("diaObject.nDiaSources >= 2")(alert)  # absent -> no match
    assert parse_filter("")(alert)
    for bad in ("__import__('os')", "diaSource.snr >", "secrets.x == 1", "diaSource.snr ~ 3"):
        with pytest.raises(FilterError):
            parse_filter(bad)


def test_archive_replays_from_a_visit_and_replaces_a_rerun(tmp_path) -> None:
    _write(tmp_path, 1, [_alert(1, 1, 5.0, "g"), _alert(2, 1, 50.0, "g")])
    _write(tmp_path, 2, [_alert(3, 2, 15.0, "r")])
    _write(tmp_path, 2, [_alert(3, 2, 15.0, "r")])  # re-processing the visit
    archive = AlertArchive(tmp_path)
    assert [a["diaSourceId"] for a in archive.replay()] == [1, 2, 3]
    assert [a["diaSourceId"] for a in archive.replay(since_visit=2)] == [3]


def test_kafka_wire_format() -> None:
    framed = wire_format(b"payload", 1101)
    assert framed[:1] == b"\x00" and struct.unpack(">I", framed[1:5])[0] == 1101
    assert framed[5:] == b"payload"


@pytest.mark.integration
async def test_stream_and_archive_endpoints(test_hub) -> None:
    from sciplat.services.app import create_app

    root = test_hub.settings.data_dir / "alerts" / "archive"
    _write(
        root,
        2025050400001,
        [_alert(11, 2025050400001, 5.0, "g"), _alert(12, 2025050400001, 40.0, "r")],
    )
    _write(root, 2025050400002, [_alert(13, 2025050400002, 30.0, "r")])
    app = create_app(test_hub.settings, hub_api_url=test_hub.api_url, plugins=[plugin])
    headers = {"Authorization": f"Bearer {test_hub.token_for('alice')}"}
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            assert (await client.get("/services/api/alerts/archive")).status_code == 401
            r = await client.get(
                "/services/api/alerts/archive",
                params={"filter": "diaSource.snr > 20"},
                headers=headers,
            )
            assert r.status_code == 200
            assert [a["diaSourceId"] for a in r.json()["alerts"]] == [12, 13]
            bad = await client.get(
                "/services/api/alerts/archive", params={"filter": "x ="}, headers=headers
            )
            assert bad.status_code == 400 and "Bad filter" in bad.text
            r = await client.get(
                "/services/api/alerts/stream",
                params={
                    "filter": "diaSource.band == 'r'",
                    "since_visit": 2025050400001,
                    "idle_timeout": 0,
                },
                headers=headers,
            )
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [
                json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")
            ]
            assert [e.get("diaSourceId") for e in events[:-1]] == [12, 13]
            carol = {"Authorization": f"Bearer {test_hub.token_for('carol')}"}
            assert (
                await client.get("/services/api/alerts/archive", headers=carol)
            ).status_code == 403
