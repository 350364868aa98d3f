"""The lab extension in a real browser (headless Debian Chromium through Playwright) against a
real platform: status bar, Tutorials, Queries, Portal, Run with parameters, Save All and Exit,
Save All, Exit, and Log Out; and a lab whose services are unreachable (start-up dialog, menus
say so, the lab keeps working). Screenshots go to ``test-artifacts/lab/``. Runs after
test_lab_server (it uses the files and query that test made, and its last steps stop the lab)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from labhelpers import ARTIFACTS, USER, notebook_json, put_file

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
LONG = 90_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser, lab_platform) -> Iterator:
    """labuser, logged in at the hub, in her running lab."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    page.goto(f"{lab_platform.url}/hub/login?next=/user/{USER}/lab")
    page.fill("#username_input", USER)
    page.fill("#password_input", lab_platform.password)
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{USER}/lab**", timeout=LONG)
    expect(page.locator("#sciplat-status")).to_be_visible(timeout=LONG)
    dismiss_news(page)
    yield page
    context.close()


def dismiss_news(page) -> None:
    """Answer JupyterLab's "get notified about official Jupyter news?" toast (it covers the
    bottom right corner), if it shows up."""
    with contextlib.suppress(Exception):
        page.get_by_role("alert").get_by_role("button", name="No").click(timeout=5_000)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_menu(page, label: str) -> None:
    page.locator(".lm-MenuBar-item", has_text=label).first.click()


def close_menus(page) -> None:
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")


def close_tab(page, name: str) -> None:
    """Close the document tab *name*, discarding unsaved changes if asked."""
    from playwright.sync_api import expect

    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name).first
    tab.locator(".lm-TabBar-tabCloseIcon").click()
    discard = page.locator(".jp-Dialog").get_by_role("button", name="Discard")
    with contextlib.suppress(Exception):
        discard.click(timeout=3_000)
    expect(tab).to_be_hidden(timeout=10_000)


def test_status_bar_shows_image_size_and_memory(page):
    from playwright.sync_api import expect

    status = page.locator("#sciplat-status")
    expect(status).to_contain_text("Recommended (sciplat's own environment) · small · Mem",
                                   timeout=30_000)  # fmt: skip
    expect(status).to_contain_text("/4.0 GiB")
    # the home's disk use against the quota, as the workspace service measures it
    expect(status).to_contain_text(" · Home ", timeout=30_000)
    expect(status).to_contain_text("/10.0 GiB")
    assert "Disk: group users" in status.get_attribute("title")
    shot(page, "01-status-bar")


def _edited(notebook: dict) -> dict:
    """*notebook* with a mark of the user's own in its metadata (kernelspec kept)."""
    return {**notebook, "metadata": {**notebook["metadata"], "mine": 1}}


def test_tutorial_opens_a_personal_copy_and_never_overwrites_it(page, lab_platform):
    from playwright.sync_api import expect

    path = "01-platform-tour.ipynb"
    copy = lab_platform.home / "notebooks" / "tutorials" / path
    assert not copy.exists()
    open_menu(page, "Tutorials")
    page.locator("#sciplat-tutorials-menu .lm-Menu-item", has_text="Tutorials").first.hover()
    page.locator(f'[data-testid="sciplat-tutorial:{path}"]').click()
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=path)).to_be_visible(
        timeout=LONG
    )
    assert copy.is_file()
    shot(page, "02-tutorial-opened")
    close_tab(page, path)  # edited on disk below: an open copy would then ask about it
    put_file(
        lab_platform,
        f"notebooks/tutorials/{path}",
        _edited(json.loads(copy.read_text())),
        "notebook",
    )
    open_menu(page, "Tutorials")
    page.locator("#sciplat-tutorials-menu .lm-Menu-item", has_text="Tutorials").first.hover()
    page.locator(f'[data-testid="sciplat-tutorial:{path}"]').click()
    dialog = page.locator(".sciplat-tutorial-exists")
    expect(dialog).to_be_visible(timeout=30_000)
    shot(page, "03-tutorial-exists-dialog")
    page.get_by_role("button", name="Open it").click()
    expect(dialog).to_be_hidden()
    assert json.loads(copy.read_text())["metadata"]["mine"] == 1  # the user's copy is kept


def test_queries_menu_opens_a_query_as_notebook(page, lab_platform):
    from playwright.sync_api import expect

    with lab_platform.lab_api() as lab:
        job_id = lab.get("sciplat-lab/queries").json()["queries"][0]["job_id"]
    open_query_submenu(page, job_id)
    shot(page, "04-queries-menu")
    page.locator(f'[data-testid="sciplat-query-notebook:{job_id}"]').click()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=job_id).first
    expect(tab).to_be_visible(timeout=LONG)
    code = page.locator(".jp-Notebook .jp-CodeCell", has_text="sciplat.get_query").first
    expect(code).to_contain_text(job_id, timeout=LONG)
    shot(page, "05-query-notebook")
    # "Open in portal": the portal tab, at the deep link of that job
    open_query_submenu(page, job_id)
    page.locator(f'[data-testid="sciplat-query-portal:{job_id}"]').click()
    frame = page.locator("#sciplat-portal iframe")
    expect(frame).to_have_attribute("src", re.compile(rf"/services/portal/\?job={job_id}$"))
    portal = _portal_frame(page)
    expect(portal.locator("#who")).to_have_text(USER, timeout=LONG)
    # the portal's deep link opened that job's result in its table
    expect(portal.locator("#result-meta")).to_contain_text(f"job {job_id}", timeout=LONG)
    expect(portal.locator("#job-status")).to_contain_text(f"job {job_id}: ")
    expect(portal.locator("#table tbody tr").first).to_be_visible()
    shot(page, "05b-query-in-portal")


def open_query_submenu(page, job_id: str) -> None:
    """Open Queries and hover *job_id*'s submenu. The menu refetches the history when opened
    (if older than 5 s) and may close while it rebuilds; opened again within 5 s it stays."""
    for attempt in range(4):
        open_menu(page, "Queries")
        page.wait_for_timeout(800)
        try:
            page.locator("#sciplat-queries-menu .lm-Menu-item", has_text=job_id).first.hover(
                timeout=2_000
            )
            return
        except Exception:
            if attempt == 3:
                raise
            close_menus(page)


def _portal_frame(page):
    return page.frame_locator("#sciplat-portal iframe")


def test_portal_tab_and_send_file(page, lab_platform):
    from playwright.sync_api import expect

    open_menu(page, "Portal")
    page.locator('#sciplat-portal-menu [data-command="sciplat:open-portal"]').click()
    expect(_portal_frame(page).locator("#who")).to_have_text(USER, timeout=LONG)
    shot(page, "06-portal-tab")
    # the file browser: open tables/, right-click the CSV, "Send file to portal"
    page.locator(".jp-DirListing-item", has_text="tables").first.dblclick()
    item = page.locator(".jp-DirListing-item", has_text="stars.csv").first
    expect(item).to_be_visible(timeout=30_000)
    item.click(button="right")
    page.locator('.lm-Menu-item[data-command="sciplat:send-to-portal"]').click()
    expect(_portal_frame(page).locator("body")).to_contain_text("stars.csv", timeout=LONG)
    shot(page, "07-portal-sent-table")
    # an unsupported type: selected, then Portal > Send file to portal
    page.locator(".jp-DirListing-item", has_text="notes.txt").first.click()
    open_menu(page, "Portal")
    page.locator('#sciplat-portal-menu [data-command="sciplat:send-to-portal"]').click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Cannot send to the portal", timeout=30_000)
    expect(dialog).to_contain_text(".csv")
    shot(page, "08-portal-unsupported-type")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_run_with_parameters(page, lab_platform):
    from playwright.sync_api import expect

    page.locator(".jp-BreadCrumbs-home").click()
    page.locator(".jp-DirListing-item", has_text="runs").first.dblclick()
    page.locator(".jp-DirListing-item", has_text="square.ipynb").first.dblclick()
    button = page.locator('[data-jp-item-name="sciplat-run"]:visible').first
    expect(button).to_be_visible(timeout=LONG)
    button.click()
    dialog = page.locator(".sciplat-run-dialog")
    expect(dialog).to_be_visible(timeout=30_000)
    page.locator('[data-testid="sciplat-param-n"]').fill("500")
    page.locator(".jp-Dialog").get_by_role("button", name="Run", exact=True).click()
    expect(page.locator('[data-testid="sciplat-run-error"]')).to_contain_text("n", timeout=10_000)
    shot(page, "09-run-form-invalid")
    page.locator('[data-testid="sciplat-param-n"]').fill("7")
    page.locator(".jp-Dialog").get_by_role("button", name="Run", exact=True).click()
    result = page.frame_locator(".sciplat-run-result iframe").first
    expect(result.locator("body")).to_contain_text("result 49 hello", timeout=180_000)
    expect(result.locator("body")).not_to_contain_text("<!DOCTYPE")  # rendered, not source
    shot(page, "10-run-result")


def test_offline_lab_says_what_is_unreachable_and_keeps_working(browser, offline_lab):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{offline_lab['url']}/lab?token={offline_lab['token']}")
        problems = page.locator(".sciplat-startup-problems")
        expect(problems).to_be_visible(timeout=LONG)
        expect(problems.locator('[data-problem-code="disk-full"]')).to_be_visible()
        shot(page, "11-startup-problems")
        page.keyboard.press("Escape")
        open_menu(page, "Queries")
        error = page.locator('[data-testid="sciplat-queries-error"]')
        expect(error).to_contain_text("unreachable", timeout=30_000)
        shot(page, "12-queries-unreachable")
        close_menus(page)
        # the lab still works: a notebook opens and its kernel starts
        page.locator(".jp-DirListing-item", has_text="sq.ipynb").first.dblclick()
        cell = page.locator(".jp-Notebook .jp-CodeCell", has_text="print(n)").first
        expect(cell).to_be_visible(timeout=LONG)
        expect(page.get_by_text("| Idle").first).to_be_visible(timeout=LONG)
        shot(page, "13-offline-lab-still-works")
    finally:
        context.close()


def test_save_all_and_exit_stops_the_server(page, lab_platform):
    from playwright.sync_api import expect

    open_menu(page, "File")
    page.locator('.lm-Menu-item[data-command="sciplat:save-all-and-exit"]').click()
    page.wait_for_url("**/hub/home**", timeout=LONG)
    deadline = time.monotonic() + 60
    while lab_platform.harness.server_model(USER) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lab_platform.harness.server_model(USER) is None  # the hub recorded it stopped
    page.reload()
    expect(page.locator("#start")).to_be_visible(timeout=30_000)
    shot(page, "14-exited-hub-home")
    r = httpx.get(
        f"{lab_platform.lab_url}/api/status",
        follow_redirects=False,
        headers={"Authorization": f"token {lab_platform.harness.token_for(USER)}"},
    )
    assert r.status_code != 200


def test_save_all_exit_and_log_out(page, lab_platform):
    """File > "Save All, Exit, and Log Out" with an unsaved edit: the edit is on disk, the hub
    records the server stopped, and the browser is logged out (its hub cookies are cleared)."""
    from playwright.sync_api import expect

    harness = lab_platform.harness
    if harness.server_model(USER) is None:  # test_save_all_and_exit stopped it
        harness.start(USER, {"image": "recommended", "size": "small"})
    path = "exit-logout.ipynb"
    put_file(lab_platform, path, notebook_json("x = 1"), "notebook")
    page.goto(f"{lab_platform.lab_url}/lab/tree/{path}")
    expect(page.locator("#sciplat-status")).to_be_visible(timeout=LONG)
    dismiss_news(page)
    # (tabs restored from earlier tests may hold other notebooks' cells)
    editor = page.locator(".jp-Notebook .jp-CodeCell .cm-content", has_text="x = 1").first
    expect(editor).to_be_visible(timeout=LONG)
    editor.click()
    page.keyboard.press("End")
    page.keyboard.type("  # typed before logging out")
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=path).first
    expect(tab).to_have_class(re.compile(r"jp-mod-dirty"), timeout=10_000)  # unsaved
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert "jupyterhub-hub-login" in cookies
    open_menu(page, "File")
    page.locator('.lm-Menu-item[data-command="sciplat:save-all-exit-and-logout"]').click()
    page.wait_for_url("**/hub/login**", timeout=LONG)
    expect(page.locator("#username_input")).to_be_visible(timeout=30_000)
    shot(page, "15-logged-out-login-page")
    saved = json.loads((lab_platform.home / path).read_text())
    assert "".join(saved["cells"][0]["source"]) == "x = 1  # typed before logging out"
    deadline = time.monotonic() + 60
    while harness.server_model(USER) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert harness.server_model(USER) is None  # the hub recorded it stopped
    # the browser is logged out: its hub cookies are gone, the hub's pages ask for a login
    left = {c["name"] for c in page.context.cookies()}
    assert not left & {"jupyterhub-hub-login", "jupyterhub-session-id"}, left
    page.goto(f"{lab_platform.url}/hub/home")
    page.wait_for_url("**/hub/login**", timeout=30_000)
    expect(page.locator("#username_input")).to_be_visible()
