"""The portal in a real browser (headless Debian Chromium through Playwright) against the real
hub: log in -> ADQL query -> table -> plot -> image pushed from a notebook with a catalog
overlay -> HiPS all-sky view -> "Open in notebook", and the notebook it writes runs.
Screenshots go to ``test-artifacts/portal/``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from skydata import CENTER, star_field

import sciplat.portal as portal

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "portal"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]  # fmt: skip


def test_portal_in_browser(portal_hub, portal_url, tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    token = portal_hub.token_for("alice")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            # 1. log in at the hub; OAuth brings us back to the portal
            page.goto(f"{portal_url}/")
            page.fill("#username_input", "alice")
            page.fill("#password_input", portal_hub.password)
            page.click("#login_submit")
            page.wait_for_url(f"{portal_url}/**", timeout=60_000)
            expect(page.locator("#who")).to_have_text("alice", timeout=30_000)
            expect(page.locator("#schema summary").first).to_be_attached(timeout=30_000)

            # 2. broken ADQL: the TAP error, with its position, in the editor
            page.fill("#adql", "SELECT coord_ra, nosuch\nFROM dp1.Object")
            page.click("#run")
            expect(page.locator("#adql-error")).to_contain_text("nosuch", timeout=60_000)
            expect(page.locator("#adql-error")).to_contain_text("line 1")
            page.screenshot(path=str(ARTIFACTS / "01-adql-error.png"))

            # 3. a query -> the paged table
            page.fill(
                "#adql",
                "SELECT objectId, coord_ra, coord_dec, g_psfFlux, r_psfFlux FROM dp1.Object",
            )
            page.click("#run")
            expect(page.locator("#job-status")).to_contain_text("3000 rows", timeout=120_000)
            expect(page.locator("#table tbody tr")).to_have_count(100)
            expect(page.locator("#pageinfo")).to_contain_text("of 3000")
            page.click("#next")
            expect(page.locator("#pageinfo")).to_contain_text("rows 101-200")
            job_text = page.locator("#job-status").inner_text()
            job_id = job_text.split()[1].rstrip(":")

            # 4. a plot, and a box selection that filters the table
            page.fill("#plot-x", "coord_ra")
            page.fill("#plot-y", "coord_dec")
            page.click("#plot-go")
            page.wait_for_function("() => S.plot !== null && S.plot.type === 'points'")
            page.locator("#plot").scroll_into_view_if_needed()
            box = page.locator("#plot").bounding_box()
            page.mouse.move(box["x"] + 100, box["y"] + 60)
            page.mouse.down()
            page.mouse.move(box["x"] + 300, box["y"] + 200)
            page.mouse.up()
            expect(page.locator("#msg")).to_contain_text("range filter", timeout=20_000)
            expect(page.locator("#pageinfo")).not_to_contain_text("of 3000", timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "02-table-plot.png"))

            # 4b. light curve of the selected object (its sources, flux against time)
            page.locator("#table tbody tr").first.click()
            page.click("#lightcurve")
            expect(page.locator("#job-status")).to_contain_text("3 rows", timeout=120_000)
            page.wait_for_function("() => S.plot !== null && S.plot.x && S.plot.x.length === 3")
            assert page.evaluate("S.plot.xexpr") == "mjd"

            # 5. notebook -> portal: a table and an image pushed with sciplat.portal
            me = httpx.get(
                f"{portal_url}/api/me", headers={"Authorization": f"Bearer {token}"}
            ).json()
            fc = portal.client(portal_url, token=token, channel=me["channel"])
            image = tmp_path / "field.fits"
            stars = star_field(image)
            tbl_id = portal.show_table(stars, title="stars from a notebook", fc=fc)
            expect(page.locator("#result-meta")).to_contain_text(f"{len(stars)} rows")
            # a row picked in the page reaches the notebook's Firefly highlight callback
            picked: list = []
            done = threading.Event()

            def on_row(absolute, relative, data, table_id):
                picked.append((absolute, relative, data, table_id))
                done.set()

            fc.table_highlight_callback(on_row, None)
            page.wait_for_timeout(1000)
            page.locator("#table tbody tr").nth(2).click()
            assert done.wait(30)
            absolute, relative, data, table_id = picked[-1]
            assert (absolute, relative, table_id) == (2, 2, tbl_id)
            assert abs(data["ra"] - stars["ra"][2]) < 1e-9
            portal.show_image(str(image), title="field", fc=fc)
            expect(page.locator("#msg")).to_contain_text("image field", timeout=30_000)
            page.click("#overlay")
            expect(page.locator("#msg")).to_contain_text(f"{len(stars)} sources on the image")
            img = page.locator("#img-canvas").bounding_box()
            page.mouse.move(img["x"] + 300, img["y"] + 300)
            expect(page.locator("#img-readout")).to_contain_text("RA=150.", timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "03-image-overlay.png"))

            # 6. the all-sky view (Aladin Lite) on the platform's HiPS, with the table overlaid
            page.click("button[data-tab=sky]")
            expect(page.locator("#hips-survey option")).to_have_count(1)
            page.wait_for_timeout(3000)
            sky_msg = page.locator("#sky-msg").inner_text()
            assert "unavailable" not in sky_msg, sky_msg
            with page.expect_response(
                lambda r: "/hips/g/Norder" in r.url and r.status == 200, timeout=60_000
            ):
                page.click("#sky-overlay")  # zooms onto the sources: tiles of the survey load
            expect(page.locator("#sky-msg")).to_contain_text(f"{len(stars)} sources overlaid")
            page.wait_for_timeout(6000)  # let Aladin Lite draw the tiles
            page.screenshot(path=str(ARTIFACTS / "04-hips.png"))
            page.click("#sky-query")
            query = page.locator("#adql").input_value()
            assert "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 150." in query
            assert float(page.locator("#cone-r").input_value()) <= 1.5
            assert abs(float(page.locator("#cone-ra").input_value()) - CENTER[0]) < 1

            # 7. portal -> notebook
            page.select_option("#results", label=f"Job {job_id} (3000 rows)")
            expect(page.locator("#notebook")).to_be_enabled()
            page.click("#notebook")
            # (the workspace makes alice's account and home on first use: allow for it)
            expect(page.locator("#msg")).to_contain_text(
                "notebook written to ~/portal/", timeout=90_000
            )
            page.screenshot(path=str(ARTIFACTS / "05-open-in-notebook.png"))
            # Nothing of ours fails. Aladin Lite also asks the internet (CDS's HiPS list), which
            # this machine cannot reach; those failed fetches are its only page errors.
            ours = [url for url in failed if url.startswith(portal_hub.url)]
            assert not ours, ours
            external = [url for url in failed if not url.startswith(portal_hub.url)]
            unexplained = [e for e in errors if not (external and "Failed to fetch" in e)]
            assert not unexplained, (errors, failed)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()

    # the notebook is in alice's home (WebDAV) and its code fetches the same rows
    dav = httpx.get(
        f"{portal_hub.url}/services/api/webdav/home/alice/portal/query-{job_id}.ipynb",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert dav.status_code == 200
    code = "".join(json.loads(dav.text)["cells"][1]["source"])
    assert f"sciplat.get_query({job_id!r})" in code
    # run the notebook's code as a lab would (discovery document + token in the environment)
    from sciplat.client import discovery_document

    doc_file = tmp_path / "discovery.json"
    doc_file.write_text(discovery_document(portal_hub.url).model_dump_json())
    monkeypatch.setenv("SCIPLAT_DISCOVERY", str(doc_file))
    monkeypatch.setenv("ACCESS_TOKEN", token)
    namespace: dict = {}
    exec(code, namespace)
    assert len(namespace["table"]) == 3000
    assert set(namespace["table"].colnames) >= {"objectId", "coord_ra", "g_psfFlux"}
