"""The real firefly_client drives the embedded portal (upload, show_table, show_fits_image,
plots, events) - the same calls an RSP notebook makes against IPAC Firefly."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from firefly_client import FireflyClient
from websocket import create_connection

import sciplat.portal as portal

pytestmark = pytest.mark.integration


def _viewer(portal_url: str, channel: str, token: str):
    ws_url = portal_url.replace("http://", "ws://")
    ws = create_connection(
        f"{ws_url}/sticky/firefly/events?channelID={channel}&viewer=1",
        header=[f"Authorization: Bearer {token}"],
        timeout=30,
    )
    first = json.loads(ws.recv())
    assert first["name"] == "EVT_CONN_EST"
    return ws


def _fits(path) -> None:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [50.5, 50.5]
    wcs.wcs.cdelt = [-0.0002, 0.0002]
    data = np.random.default_rng(1).normal(size=(100, 100)).astype("f4")
    fits.PrimaryHDU(data, header=wcs.to_header()).writeto(path)


def test_firefly_client_drives_portal(portal_hub, portal_url, tmp_path):
    token = portal_hub.token_for("alice")
    channel = "nbchannel1"
    viewer = _viewer(portal_url, channel, token)
    fc = portal.client(portal_url, token=token, channel=channel)
    assert isinstance(fc, FireflyClient)
    # the browser page is connected on this channel
    assert fc._is_page_connected() is True

    events: list[dict] = []
    got = threading.Event()

    def listener(event):
        events.append(event)
        got.set()

    fc.add_listener(listener)
    time.sleep(1.0)

    table = Table({"ra": [150.0, 150.01], "dec": [2.0, 2.01], "mag": [20.5, 21.0]})
    path = tmp_path / "t.vot"
    table.write(path, format="votable")
    key = fc.upload_file(str(path))
    assert key.startswith("${")
    status = fc.show_table(key, tbl_id="tbl1", title="two stars")
    assert status["success"] is True, status
    message = json.loads(viewer.recv())
    assert message["kind"] == "table"
    assert message["result"]["rows"] == 2
    assert message["result"]["title"] == "two stars"

    assert fc.show_xyplot("tbl1", xCol="ra", yCol="dec")["success"] is True
    plot = json.loads(viewer.recv())["plot"]
    assert plot == {"type": "scatter", "result": message["result"]["id"], "x": "ra", "y": "dec"}
    assert fc.show_histogram("tbl1", col="mag", numBins=5)["success"] is True
    assert json.loads(viewer.recv())["plot"]["type"] == "histogram"
    # the same through sciplat.portal (what a notebook calls)
    portal.show_plot("tbl1", x="mag", kind="histogram", fc=fc)
    assert json.loads(viewer.recv())["plot"]["x"] == "mag"
    with pytest.raises(portal.PortalError, match="No table 'sciplat-nope' on this channel"):
        portal.show_plot("sciplat-nope", x="a", y="b", fc=fc)

    image = tmp_path / "img.fits"
    _fits(image)
    assert fc.show_fits_image(str(image), title="noise")["success"] is True
    shown = json.loads(viewer.recv())
    assert shown["kind"] == "image"
    assert shown["image"]["width"] == 100 and shown["image"]["has_wcs"] is True
    assert abs(shown["image"]["center"][0] - 150.0) < 0.01

    # the page sends an event; the notebook's listener gets it
    viewer.send(json.dumps({"name": "table.highlight", "data": {"row": 1}}))
    assert got.wait(20)
    assert events[-1] == {"name": "table.highlight", "data": {"row": 1}}

    # an unsupported action is refused with its name
    refused = fc.set_zoom("plot1", 2.0)
    assert refused["success"] is False
    assert "ImagePlotCntlr.ZoomImage" in refused["error"]
    viewer.close()
    fc.remove_listener(listener)

    # the rendered image, WCS read-out and catalog overlay from the table
    with httpx.Client(
        base_url=portal_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        iid = shown["image"]["id"]
        png = http.get(f"/api/images/{iid}/png", params={"stretch": "zscale"})
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        world = http.get(f"/api/images/{iid}/world", params={"x": 49.5, "y": 49.5}).json()
        assert abs(world["ra"] - 150.0) < 1e-6 and abs(world["dec"] - 2.0) < 1e-6
        over = http.post(
            f"/api/images/{iid}/overlay", json={"result": message["result"]["id"]}
        ).json()
        assert len(over["points"]) == 1 and over["outside"] == 1
        assert abs(over["points"][0][0] - 49.5) < 0.01


def test_channel_auth(portal_hub, portal_url):
    # no token, unsigned channel: refused with a message that says what to do
    fc_status = httpx.post(
        f"{portal_url}/sticky/CmdSrv",
        data={"cmd": "pushAction", "channelID": "x", "action": "{}"},
    )
    assert fc_status.status_code == 401
    assert "token" in fc_status.json()["message"]
    # carol has no portal scope
    carol = portal_hub.token_for("carol")
    denied = httpx.post(
        f"{portal_url}/sticky/CmdSrv",
        data={"cmd": "pushAliveCheck", "channelID": "x"},
        headers={"Authorization": f"Bearer {carol}"},
    )
    assert denied.status_code == 403
    # the channel a lab gets (signed for alice) works without a token over http
    me = httpx.get(
        f"{portal_url}/api/me",
        headers={"Authorization": f"Bearer {portal_hub.token_for('alice')}"},
    ).json()
    fc = FireflyClient.make_client(portal_url, launch_browser=False, channel_override=me["channel"])
    assert fc._is_page_connected() is False
    version = httpx.get(f"{portal_url}/sticky/CmdSrv", params={"cmd": "CmdVersion"}).json()
    assert version[0]["version"] >= "2025.4"
    # a channel signed for alice does not work with a changed user name
    forged = me["channel"].replace(".alice.", ".bob.")
    bad = httpx.post(
        f"{portal_url}/sticky/CmdSrv", data={"cmd": "pushAliveCheck", "channelID": forged}
    )
    assert bad.status_code == 401
