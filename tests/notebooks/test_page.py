"""The commissioning page in a real browser (headless Debian Chromium through Playwright)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import uvicorn

from support.net import free_port

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def page_server(nb_settings, test_hub):
    from sciplat.services.app import create_app
    from sciplat.services.notebooks import plugin

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(nb_settings, hub_api_url=test_hub.api_url, plugins=[plugin],
                     public_url=f"{base}/services/api")  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    yield f"{base}/services/api/notebooks"
    server.should_exit = True
    thread.join(30)


def test_pick_fill_run_watch_read_share(page_server, test_hub):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    alice = test_hub.token_for("alice")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            # No token: the sign-in box, not an error page.
            page.goto(f"{page_server}/ui")
            expect(page.locator("#signin")).to_be_visible()
            page.fill("#token-input", alice)
            page.click("#signin button")
            expect(page.locator("button.template", has_text="Square a number")).to_be_visible(
                timeout=60_000
            )
            expect(page.locator("button.template", has_text="(broken)").first).to_be_visible()
            page.click("button.template:has-text('Square a number')")
            expect(page.locator("#param-n")).to_have_value("3", timeout=30_000)
            page.fill("#param-n", "12")
            page.select_option("#param-label", "b")
            page.check("#param-loud")
            page.click("#run-button")
            expect(page.locator("#run-status")).to_have_text("succeeded", timeout=120_000)
            frame = page.frame_locator("#output")
            expect(frame.locator("body")).to_contain_text("square 144 b True alice")
            expect(frame.get_by_text("square 144 b True alice")).to_be_visible()
            expect(page.locator("#run-cells")).to_have_text("2 / 2 cells")
            expect(page.locator("#history tr")).to_have_count(1)
            page.click("#share-button")
            expect(page.locator("#share-button")).to_have_text("Shared (click to unshare)")
            page.wait_for_timeout(500)  # let the frame paint before the screenshot
            page.screenshot(path=str(ARTIFACTS / "notebooks-run.png"), full_page=True)
            link = page.locator("#run-link").get_attribute("href")
            assert "?run=" in link

            # Bob opens the shared link in his own session.
            bob = browser.new_page(viewport={"width": 1300, "height": 900})
            bob.goto(f"{link}#token={test_hub.token_for('bob')}")
            expect(bob.locator("#run-status")).to_have_text("succeeded", timeout=30_000)
            expect(bob.frame_locator("#output").locator("body")).to_contain_text("square 144")

            # A failing template shows the failing cell and its traceback.
            page.click("button.template:has-text('Raises')")
            page.fill("#param-x", "5")
            page.click("#run-button")
            expect(page.locator("#run-status")).to_have_text("failed", timeout=120_000)
            expect(page.locator("#run-error-message")).to_have_text(
                "Cell 2: ValueError: bad visit 5"
            )
            expect(page.locator("#run-traceback")).to_contain_text("raise ValueError")
            expect(page.frame_locator("#output").locator("body")).to_contain_text("bad visit 5")
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "notebooks-failed.png"), full_page=True)
        finally:
            browser.close()
