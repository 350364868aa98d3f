"""The embedded default's identity, end to end over HTTP against a real JupyterHub.

Sign-up -> login refused until approved -> an admin approves on the authorization page ->
login works and the user holds the default group's scopes; password rules; reserved and
invalid names; duplicate sign-ups; bad form input - each a clear message (page and JSON),
never a 500, and the hub keeps serving.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_auth_helpers import (
    AuthHub,
    alert,
    error_message,
    hub_settings,
    login_error,
    post_form,
    start_auth_hub,
    xsrf,
)

from sciplat.config import HubConfig, Settings

pytestmark = pytest.mark.integration

PASSWORD = "velvet-orbit-7319"
ADMIN_PASSWORD = "quiet-harbor-2048"
JSON = {"Accept": "application/json"}
_names = itertools.count(1)


def fresh_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_names)}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthHub]:
    directory = Path(tmp_path_factory.mktemp("native-hub"))
    settings = hub_settings(
        Settings(data_dir=directory / "data", hub=HubConfig(admin_users=["admin", "ops"]))
    )
    hub = start_auth_hub(directory / "hub", settings)
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def admin(hub: AuthHub) -> Iterator[httpx.Client]:
    """The admin's browser, logged in (admins listed in hub.admin_users need no approval)."""
    client = hub.client()
    page = signup(client, "admin", ADMIN_PASSWORD)
    assert page.status_code == 201, alert(page)
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 302
    yield client
    client.close()


def signup(
    client: httpx.Client, username: str, password: str, confirmation: str | None = None, **kwargs
) -> httpx.Response:
    data = {
        "username": username,
        "signup_password": password,
        "signup_password_confirmation": password if confirmation is None else confirmation,
    }
    return post_form(client, "/hub/signup", data, **kwargs)


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return post_form(client, "/hub/login", {"username": username, "password": password})


def approve(admin: httpx.Client, username: str) -> httpx.Response:
    """Press the user's Approve button on the authorization page."""
    page = admin.get("/hub/authorize")
    assert page.status_code == 200
    assert f'id="user-{username}"' in page.text
    return admin.post(f"/hub/authorize/{username}", data={"_xsrf": xsrf(page)})


def test_signup_waits_for_approval_then_login_lands_in_default_group(
    hub: AuthHub, admin: httpx.Client
) -> None:
    name = fresh_name("alice")
    browser = hub.client()

    page = signup(browser, name, PASSWORD)
    assert page.status_code == 201
    assert "waiting for an administrator's approval" in alert(page)

    refused = login(browser, name, PASSWORD)
    assert refused.status_code == 403
    assert (
        login_error(refused) == f"Your account '{name}' is waiting for an administrator's approval."
    )
    assert not hub_user_exists(hub, name)  # no hub account before approval and login

    approved = approve(admin, name)
    assert approved.status_code == 302
    assert approved.headers["location"] == f"/hub/authorize#{name}"
    assert approved_on_page(admin, name) == "yes"

    ok = login(browser, name, PASSWORD)
    assert ok.status_code == 302, login_error(ok)
    # The hub account exists now, in the default group, and holds the group's scopes.
    assert hub.user(name)["groups"] == ["users"]
    me = browser.get("/hub/api/user")
    assert me.status_code == 200
    assert me.json()["name"] == name
    scopes = set(me.json()["scopes"])
    assert {
        "custom:tap:read",
        "custom:image:read",
        "custom:files:write",
        "custom:portal:use",
        "custom:notebooks:exec",
        "access:services!service=dask-gateway",
    } <= scopes

    # Withdrawing the approval closes the door again.
    assert approve(admin, name).status_code == 302
    assert login(hub.client(), name, PASSWORD).status_code == 403


def test_admin_is_in_default_group_and_admin_groups_survive_login(
    hub: AuthHub, admin: httpx.Client
) -> None:
    assert hub.user("admin")["admin"] is True
    assert "users" in hub.user("admin")["groups"]
    # Memberships an admin adds stay: logins only ever add the default groups.
    name = fresh_name("staffer")
    browser = hub.client()
    signup(browser, name, PASSWORD)
    approve(admin, name)
    assert login(browser, name, PASSWORD).status_code == 302
    with hub.api() as api:
        assert api.post("/groups/staff/users", json={"users": [name]}).status_code == 200
    assert login(hub.client(), name, PASSWORD).status_code == 302
    assert sorted(hub.user(name)["groups"]) == ["staff", "users"]


def test_a_second_admin_name_cannot_be_claimed_without_approval(
    hub: AuthHub, admin: httpx.Client
) -> None:
    # "ops" is in hub.admin_users, but an admin exists already: the sign-up waits.
    page = signup(hub.client(), "ops", PASSWORD, headers=JSON)
    assert page.status_code == 201
    assert page.json()["approved"] is False
    assert login(hub.client(), "ops", PASSWORD).status_code == 403
    approve(admin, "ops")
    assert login(hub.client(), "ops", PASSWORD).status_code == 302
    assert hub.user("ops")["admin"] is True


def hub_user_exists(hub: AuthHub, name: str) -> bool:
    with hub.api() as api:
        return api.get(f"/users/{name}").status_code == 200


def approved_on_page(admin: httpx.Client, username: str) -> str:
    """The "Approved" cell of *username*'s row on the authorization page."""
    page = admin.get("/hub/authorize").text
    start = page.index(f'id="user-{username}"')
    cells = page[start : page.index("</tr>", start)].split("<td>")
    return cells[3].split("</td>")[0].strip()


def test_only_admins_see_the_authorization_page(hub: AuthHub) -> None:
    name = fresh_name("nosy")
    browser = hub.client()
    signup(browser, name, PASSWORD)
    assert browser.get("/hub/authorize").status_code == 403  # anonymous
    # A pending user cannot approve themself either (no session, no XSRF-valid form).
    response = browser.post(f"/hub/authorize/{name}", data={"_xsrf": "x"})
    assert response.status_code == 403
    assert login(browser, name, PASSWORD).status_code == 403


def test_approval_link_cannot_be_triggered_by_a_get(hub: AuthHub, admin: httpx.Client) -> None:
    name = fresh_name("csrf")
    signup(hub.client(), name, PASSWORD)
    response = admin.get(f"/hub/authorize/{name}")  # what a cross-site link or image would do
    assert response.status_code == 405
    assert approved_on_page(admin, name) == "no"
    assert login(hub.client(), name, PASSWORD).status_code == 403


def test_approving_an_unknown_name_is_a_404_page(hub: AuthHub, admin: httpx.Client) -> None:
    page = admin.get("/hub/authorize")
    response = admin.post("/hub/authorize/nobody-here", data={"_xsrf": xsrf(page)})
    assert response.status_code == 404
    assert "Nobody signed up as 'nobody-here'" in error_message(response)


def test_discard_removes_a_pending_signup(hub: AuthHub, admin: httpx.Client) -> None:
    name = fresh_name("spam")
    signup(hub.client(), name, PASSWORD)
    page = admin.get("/hub/authorize")
    response = admin.post(f"/hub/discard/{name}", data={"_xsrf": xsrf(page)})
    assert response.status_code == 302
    assert f'id="user-{name}"' not in admin.get("/hub/authorize").text
    # The name is free again.
    assert signup(hub.client(), name, PASSWORD).status_code == 201


@pytest.mark.parametrize(
    ("password", "confirmation", "message"),
    [
        ("short-1", None, "Passwords need at least 10 characters."),
        ("1234567890", None, "on a list of commonly used passwords"),
        ("qwertyuiop", None, "on a list of commonly used passwords"),
        (PASSWORD, PASSWORD + "x", "The password and its confirmation differ."),
    ],
)
def test_password_rules(
    hub: AuthHub, password: str, confirmation: str | None, message: str
) -> None:
    name = fresh_name("pw")
    page = signup(hub.client(), name, password, confirmation)
    assert page.status_code == 400
    assert message in alert(page)
    # Nothing was created: the name is still free.
    assert signup(hub.client(), name, PASSWORD).status_code == 201


def test_overlong_passwords_are_refused_not_a_500(hub: AuthHub) -> None:
    name = fresh_name("long")
    page = signup(hub.client(), name, "p" * 100)
    assert page.status_code == 400
    assert alert(page) == "Passwords can be at most 72 bytes long."
    assert signup(hub.client(), name, PASSWORD).status_code == 201
    assert login(hub.client(), name, "p" * 100).status_code == 403
    assert login(hub.client(), "admin", "ä" * 40).status_code == 403


def test_change_password(hub: AuthHub, admin: httpx.Client) -> None:
    name = fresh_name("chris")
    browser = hub.client()
    signup(browser, name, PASSWORD)
    approve(admin, name)
    assert login(browser, name, PASSWORD).status_code == 302

    def change(old: str, new: str, confirmation: str | None = None) -> httpx.Response:
        data = {
            "old_password": old,
            "new_password": new,
            "new_password_confirmation": new if confirmation is None else confirmation,
        }
        return post_form(browser, "/hub/change-password", data)

    assert alert(change("wrong-password-1", "fresh-meadow-5521")) == (
        "Your current password was incorrect. Please try again."
    )
    assert alert(change("x" * 100, "fresh-meadow-5521")).startswith("Your current password")
    assert alert(change(PASSWORD, "short")) == "Passwords need at least 10 characters."
    assert alert(change(PASSWORD, "fresh-meadow-5521", "other")) == (
        "The new password and its confirmation differ."
    )
    done = change(PASSWORD, "fresh-meadow-5521")
    assert done.status_code == 200
    assert alert(done) == "Your password has been changed."
    assert login(hub.client(), name, PASSWORD).status_code == 403
    assert login(hub.client(), name, "fresh-meadow-5521").status_code == 302


def test_password_must_not_contain_the_username(hub: AuthHub) -> None:
    name = fresh_name("carol")
    page = signup(hub.client(), name, f"{name}-is-my-password")
    assert page.status_code == 400
    assert alert(page) == "The password must not contain the username."


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("root", "The username 'root' is reserved for the system"),
        ("daemon", "The username 'daemon' is reserved for the system"),
        ("www-data", "The username 'www-data' is reserved for the system"),
        ("nobody", "The username 'nobody' is reserved for the system"),
        ("users", "The username 'users' is reserved for the system"),
        ("../etc", "The username '../etc' is not allowed"),
        ("a/b", "The username 'a/b' is not allowed"),
        ("bad name", "The username 'bad name' is not allowed"),
        ("9lives", "The username '9lives' is not allowed"),
        ("x" * 33, "is not allowed"),
        ("émile", "is not allowed"),
        ("", "Choose a username."),
    ],
)
def test_reserved_and_invalid_usernames(hub: AuthHub, username: str, message: str) -> None:
    page = signup(hub.client(), username, PASSWORD)
    assert page.status_code == 400
    assert message in alert(page)
    api = signup(hub.client(), username, PASSWORD, headers=JSON)
    assert api.status_code == 400
    assert api.headers["content-type"].startswith("application/json")
    assert message in api.json()["message"]
    assert api.json()["status"] == 400


def test_uppercase_is_folded_to_a_valid_name(hub: AuthHub) -> None:
    name = fresh_name("dora")
    response = signup(hub.client(), name.upper(), PASSWORD, headers=JSON)
    assert response.status_code == 201
    assert response.json()["username"] == name


def test_fields_the_form_does_not_offer_are_ignored(hub: AuthHub, admin: httpx.Client) -> None:
    name = fresh_name("eve")
    data = {"username": name, "signup_password": PASSWORD, "2fa": "on", "email": "not-an-email"}
    assert post_form(hub.client(), "/hub/signup", data).status_code == 201
    approve(admin, name)
    # 2FA was not switched on behind the form's back: the password alone logs in.
    assert login(hub.client(), name, PASSWORD).status_code == 302


def test_duplicate_signup(hub: AuthHub) -> None:
    name = fresh_name("bob")
    first = signup(hub.client(), name, PASSWORD, headers=JSON)
    assert first.status_code == 201
    assert first.json() == {
        "status": 201,
        "message": f"Your account '{name}' was created and is waiting for an administrator's "
        "approval. You can log in once it is approved.",
        "username": name,
        "approved": False,
    }
    again = signup(hub.client(), name, "another-long-secret-9")
    assert again.status_code == 409
    assert alert(again) == f"The username '{name}' is already taken; please choose another."
    api = signup(hub.client(), name, "another-long-secret-9", headers=JSON)
    assert api.status_code == 409
    assert "already taken" in api.json()["message"]
    # The original password still belongs to the original sign-up.
    assert "waiting for an administrator" in login_error(login(hub.client(), name, PASSWORD))


def test_bad_login_input_is_a_403_page_not_a_500(hub: AuthHub) -> None:
    browser = hub.client()
    wrong = login(browser, "admin", "not-the-password")
    assert wrong.status_code == 403
    assert login_error(wrong) == "Invalid username or password."
    unknown = login(browser, fresh_name("ghost"), PASSWORD)
    assert unknown.status_code == 403
    reserved = login(browser, "root", PASSWORD)
    assert reserved.status_code == 403
    assert login_error(reserved) == "Invalid username or password."
    page = browser.get("/hub/login")
    no_password = browser.post("/hub/login", data={"username": "admin", "_xsrf": xsrf(page)})
    assert no_password.status_code == 403
    no_fields = browser.post("/hub/login", data={"_xsrf": xsrf(page)})
    assert no_fields.status_code == 403
    # An expired or missing form token: the login form again, with JupyterHub's message.
    missing_xsrf = browser.post("/hub/login", data={"username": "admin", "password": "x"})
    assert missing_xsrf.status_code == 403
    assert login_error(missing_xsrf) == "Login form invalid or expired. Try again."


def test_hub_rest_api_refuses_reserved_and_invalid_names(hub: AuthHub) -> None:
    with hub.api() as api:
        bulk = api.post("/users", json={"usernames": ["root"]})
        assert bulk.status_code == 400
        assert bulk.json()["message"] == "Invalid username: root"
        one = api.post("/users/www-data")
        assert one.status_code == 400
        assert api.get("/users/www-data").status_code == 404
        assert api.get("/users/root").status_code == 404


def test_hub_keeps_serving_after_bad_input(hub: AuthHub) -> None:
    browser = hub.client()
    for username in ("root", "../../x", "a" * 500, "\x00"):
        assert signup(browser, username, "x").status_code == 400
    assert browser.get("/hub/health").status_code == 200
    assert browser.get("/hub/login").status_code == 200
    assert hub.process.poll() is None
    assert "Uncaught exception" not in hub.log()
    assert not re.search(r"\] 500 ", hub.log())
