"""MyDB and TAP_UPLOAD from the workspace through the real hub and proxy (embedded default):
the notebook client ``sciplat.mydb`` and pyvo, as a lab or an outside script uses them."""

from __future__ import annotations

import contextlib
import io

import httpx
import numpy as np
import pytest
import pyvo
from astropy.table import Table

import sciplat

pytestmark = pytest.mark.integration


def _targets(n: int) -> Table:
    table = Table()
    table["objectId"] = np.arange(1, n + 1, dtype=np.int64) * 3
    table["weight"] = np.arange(n, dtype=np.float32)
    table["weight"].unit = "mag"
    return table


def test_notebook_client_round_trip(test_hub):
    url, token = test_hub.url, test_hub.token_for("alice")
    try:
        record = sciplat.mydb.upload(_targets(40), "nb_targets", base_url=url, token=token)
        assert (record["name"], record["rows"]) == ("user_alice.nb_targets", 40)
        assert "user_alice.nb_targets" in {
            t["name"] for t in sciplat.mydb.list(base_url=url, token=token)
        }
        columns = sciplat.mydb.describe("nb_targets", base_url=url, token=token)["columns"]
        assert [(c["name"], c["unit"]) for c in columns] == [("objectid", None), ("weight", "mag")]
        with pytest.raises(sciplat.mydb.MyDBError, match="already exists"):
            sciplat.mydb.upload(_targets(2), "nb_targets", base_url=url, token=token)

        tap = sciplat.get_tap_service(url, token=token)
        joined = tap.search(
            "SELECT t.objectid, t.weight, o.coord_ra FROM user_alice.nb_targets AS t "
            "JOIN dp1.Object AS o ON o.objectId = t.objectid"
        ).to_table()
        assert len(joined) == 40
        assert joined["weight"].unit == "mag"

        job = tap.submit_job("SELECT TOP 7 objectId FROM dp1.Object ORDER BY objectId")
        job.run().wait(timeout=120)
        job.raise_if_error()
        made = sciplat.mydb.from_job(job.url, "nb_first7", base_url=url, token=token)
        assert made["rows"] == 7

        shared = sciplat.mydb.share("nb_targets", "users", base_url=url, token=token)
        assert shared["shared_with"] == ["users"]
        bob = sciplat.get_tap_service(url, token=test_hub.token_for("bob"))
        assert len(bob.search("SELECT * FROM user_alice.nb_targets").to_table()) == 40
        with pytest.raises(sciplat.mydb.MyDBError, match="HTTP 403"):
            sciplat.mydb.drop(
                "user_alice.nb_targets", base_url=url, token=test_hub.token_for("bob")
            )
    finally:
        for name in ("nb_targets", "nb_first7"):
            with contextlib.suppress(sciplat.mydb.MyDBError):
                sciplat.mydb.drop(name, base_url=url, token=token)
    assert sciplat.mydb.list(base_url=url, token=token) == []


def test_tap_upload_from_a_workspace_file(test_hub):
    """UPLOAD=name,<WebDAV URL of a file in your home>: fetched with your own token."""
    dav = f"{test_hub.api_service_url}/webdav/home/alice"
    alice = {"Authorization": f"Bearer {test_hub.token_for('alice')}"}
    votable = io.BytesIO()
    _targets(25).write(votable, format="votable")
    put = httpx.put(f"{dav}/upload_me.xml", content=votable.getvalue(), headers=alice)
    assert put.status_code in (201, 204)
    try:
        session = sciplat.discovery(test_hub.url, token=test_hub.token_for("alice"))
        tap = pyvo.dal.TAPService(session.url("tap"), session=session.requests_session())
        query = (
            "SELECT u.objectId, u.weight, o.coord_dec FROM TAP_UPLOAD.mine AS u "
            "JOIN dp1.Object AS o ON o.objectId = u.objectId ORDER BY u.objectId"
        )
        result = tap.search(query, uploads={"mine": f"{dav}/upload_me.xml"}).to_table()
        assert len(result) == 25
        assert list(result["objectId"][:3]) == [3, 6, 9]
        # Async jobs fetch it too.
        job = tap.submit_job(query, uploads={"mine": f"{dav}/upload_me.xml"})
        job.run().wait(timeout=120)
        job.raise_if_error()
        assert len(job.fetch_result().to_table()) == 25

        # bob's token cannot read alice's home: the upload is refused, clearly.
        bob_doc = sciplat.discovery(test_hub.url, token=test_hub.token_for("bob"))
        bob = pyvo.dal.TAPService(bob_doc.url("tap"), session=bob_doc.requests_session())
        with pytest.raises(pyvo.dal.DALQueryError, match="answered HTTP 403"):
            bob.search(query, uploads={"mine": f"{dav}/upload_me.xml"})
        with pytest.raises(pyvo.dal.DALQueryError, match="answered HTTP 404"):
            tap.search(query, uploads={"mine": f"{dav}/no_such_file.xml"})
        # A file that is not a VOTable.
        httpx.put(f"{dav}/notes.txt", content=b"just text", headers=alice)
        with pytest.raises(pyvo.dal.DALQueryError, match="not a readable VOTable"):
            tap.search(query, uploads={"mine": f"{dav}/notes.txt"})
    finally:
        for name in ("upload_me.xml", "notes.txt"):
            httpx.delete(f"{dav}/{name}", headers=alice)
