"""Production identity end to end: a real JupyterHub logs people in through a real OpenID
Connect provider (Authlib, on loopback); the provider's groups claim lands as hub groups.

The authorization-code flow is driven with httpx like a browser: hub ``/hub/oauth_login`` ->
provider ``/authorize`` (automatic consent) -> hub ``/hub/oauth_callback``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from oidc_provider import LoopbackOIDCProvider
from test_auth_helpers import AuthHub, error_message, hub_settings, start_auth_hub

from sciplat.config import HubConfig, OIDCConfig, Settings
from support.net import free_port

pytestmark = pytest.mark.integration

CLIENT_ID = "sciplat-hub"
CLIENT_SECRET = "loopback-client-secret-1"


@pytest.fixture(scope="module")
def provider_and_hub(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LoopbackOIDCProvider, AuthHub]]:
    directory = Path(tmp_path_factory.mktemp("oidc-hub"))
    port = free_port()
    settings = hub_settings(
        Settings(
            data_dir=directory / "data",
            hub=HubConfig(
                authenticator="oidc",
                admin_users=[],
                oidc=OIDCConfig(
                    issuer=f"http://127.0.0.1:{port}",
                    client_id=CLIENT_ID,
                    scopes=["openid", "profile", "email"],
                    admin_groups=["hub-admins"],
                ),
            ),
        )
    )
    provider = LoopbackOIDCProvider(
        port,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[f"{settings.public_url}/hub/oauth_callback"],
    ).start()
    try:
        # The secret comes from the environment, as in production.
        hub = start_auth_hub(
            directory / "hub", settings, env={"SCIPLAT_OIDC_CLIENT_SECRET": CLIENT_SECRET}
        )
    except BaseException:
        provider.stop()
        raise
    yield provider, hub
    hub.stop()
    provider.stop()


@pytest.fixture
def provider(provider_and_hub: tuple[LoopbackOIDCProvider, AuthHub]) -> LoopbackOIDCProvider:
    return provider_and_hub[0]


@pytest.fixture
def hub(provider_and_hub: tuple[LoopbackOIDCProvider, AuthHub]) -> AuthHub:
    return provider_and_hub[1]


def start_login(
    hub: AuthHub, provider: LoopbackOIDCProvider, login: str
) -> tuple[httpx.Client, str]:
    """Browser steps up to the provider's redirect back: returns the browser and callback URL."""
    provider.login_as(login)
    browser = hub.client()
    to_provider = browser.get("/hub/oauth_login")
    assert to_provider.status_code == 302
    authorize_url = to_provider.headers["location"]
    assert authorize_url.startswith(f"{provider.issuer}/authorize?")
    back = browser.get(authorize_url)
    assert back.status_code == 302, back.text
    callback = back.headers["location"]
    assert callback.startswith(f"{hub.url}/hub/oauth_callback?")
    return browser, callback


def oidc_login(
    hub: AuthHub, provider: LoopbackOIDCProvider, login: str
) -> tuple[httpx.Client, httpx.Response]:
    browser, callback = start_login(hub, provider, login)
    return browser, browser.get(callback)


def test_login_lands_claim_groups_as_hub_groups(
    hub: AuthHub, provider: LoopbackOIDCProvider
) -> None:
    provider.add_user("alice", groups=["staff", "survey-team"])
    browser, done = oidc_login(hub, provider, "alice")
    assert done.status_code == 302, error_message(done)
    user = hub.user("alice")
    assert sorted(user["groups"]) == ["staff", "survey-team", "users"]
    assert user["admin"] is False
    # The configured groups' roles reach the user: the session holds their scopes.
    me = browser.get("/hub/api/user")
    assert me.status_code == 200
    assert {"custom:tap:read", "custom:files:write", "access:services!service=dask-gateway"} <= set(
        me.json()["scopes"]
    )
    # A group sciplat.yaml does not describe is kept as a hub group, with no role.
    with hub.api() as api:
        group = api.get("/groups/survey-team")
        assert group.status_code == 200
        assert group.json()["users"] == ["alice"]
        assert group.json()["roles"] == []
        assert api.get("/groups/staff").json()["roles"] == ["group-staff"]


def test_second_login_with_changed_groups_updates_them(
    hub: AuthHub, provider: LoopbackOIDCProvider
) -> None:
    provider.add_user("bob", groups=["staff"])
    assert oidc_login(hub, provider, "bob")[1].status_code == 302
    assert sorted(hub.user("bob")["groups"]) == ["staff", "users"]
    provider.set_claims("bob", groups=["survey-team"])
    assert oidc_login(hub, provider, "bob")[1].status_code == 302
    assert sorted(hub.user("bob")["groups"]) == ["survey-team", "users"]
    provider.set_claims("bob", groups=[])
    assert oidc_login(hub, provider, "bob")[1].status_code == 302
    assert hub.user("bob")["groups"] == ["users"]


def test_admin_groups_grant_and_revoke_admin(hub: AuthHub, provider: LoopbackOIDCProvider) -> None:
    provider.add_user("olga", groups=["hub-admins"])
    assert oidc_login(hub, provider, "olga")[1].status_code == 302
    assert hub.user("olga")["admin"] is True
    provider.set_claims("olga", groups=["staff"])
    assert oidc_login(hub, provider, "olga")[1].status_code == 302
    assert hub.user("olga")["admin"] is False


def test_keycloak_group_paths_and_single_string_claims(
    hub: AuthHub, provider: LoopbackOIDCProvider
) -> None:
    provider.add_user("kim", groups=["/staff", "/survey-team"])
    assert oidc_login(hub, provider, "kim")[1].status_code == 302
    assert sorted(hub.user("kim")["groups"]) == ["staff", "survey-team", "users"]
    provider.set_claims("kim", groups="staff")
    assert oidc_login(hub, provider, "kim")[1].status_code == 302
    assert sorted(hub.user("kim")["groups"]) == ["staff", "users"]


def test_bad_state_is_a_clear_400(hub: AuthHub, provider: LoopbackOIDCProvider) -> None:
    provider.add_user("mallory")
    browser, callback = start_login(hub, provider, "mallory")
    tampered = re.sub(r"state=[^&]+", "state=eyJzdGF0ZV9pZCI6ICJ4In0", callback)
    response = browser.get(tampered)
    assert response.status_code == 400
    assert "OAuth state mismatch" in error_message(response)
    # Without the state cookie (another browser), the same callback is refused too.
    response = hub.client().get(callback)
    assert response.status_code == 400
    assert "OAuth state missing from cookies" in error_message(response)
    with hub.api() as api:
        assert api.get("/users/mallory").status_code == 404


def test_expired_code_is_a_clear_403(hub: AuthHub, provider: LoopbackOIDCProvider) -> None:
    provider.add_user("erin")
    provider.code_lifetime = 0
    try:
        _, response = oidc_login(hub, provider, "erin")
    finally:
        provider.code_lifetime = 60
    assert response.status_code == 403
    message = error_message(response)
    assert "The identity provider refused the sign-in (invalid_grant" in message
    assert "please log in again" in message


def test_replayed_code_is_refused(hub: AuthHub, provider: LoopbackOIDCProvider) -> None:
    provider.add_user("rita")
    browser, callback = start_login(hub, provider, "rita")
    assert browser.get(callback).status_code == 302
    code = re.search(r"code=([^&]+)", callback).group(1)
    # A fresh login attempt (new state cookie) that presents the already used code.
    attacker = hub.client()
    authorize_url = attacker.get("/hub/oauth_login").headers["location"]
    state = re.search(r"state=([^&]+)", authorize_url).group(1)
    response = attacker.get(f"/hub/oauth_callback?code={code}&state={state}")
    assert response.status_code == 403
    assert "invalid_grant" in error_message(response)


def test_provider_error_and_missing_code(hub: AuthHub) -> None:
    browser = hub.client()
    denied = browser.get(
        "/hub/oauth_callback?error=access_denied&error_description=The+user+said+no"
    )
    assert denied.status_code == 400
    assert "OAuth error: The user said no" in error_message(denied)
    no_code = browser.get("/hub/oauth_callback?state=x")
    assert no_code.status_code == 400
    assert "without a code" in error_message(no_code)


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ("root", "The username 'root' is reserved for the system"),
        ("ops/../x", "The username 'ops/../x' is not allowed"),
        ("alice@example.org", "The username 'alice@example.org' is not allowed"),
    ],
)
def test_unusable_username_from_provider(
    hub: AuthHub, provider: LoopbackOIDCProvider, claim: str, message: str
) -> None:
    login = f"bad-{abs(hash(claim)) % 10_000}"
    provider.add_user(login, preferred_username=claim)
    _, response = oidc_login(hub, provider, login)
    assert response.status_code == 403
    assert message in error_message(response)
    with hub.api() as api:
        assert api.get(f"/users/{claim.lower()}").status_code == 404


def test_missing_username_claim(hub: AuthHub, provider: LoopbackOIDCProvider) -> None:
    provider.add_user("nameless", preferred_username="")
    _, response = oidc_login(hub, provider, "nameless")
    assert response.status_code == 403
    assert "did not send a 'preferred_username' claim" in error_message(response)


def test_provider_down_while_finishing_a_login_is_a_502(
    hub: AuthHub, provider: LoopbackOIDCProvider
) -> None:
    provider.add_user("dana")
    browser, callback = start_login(hub, provider, "dana")
    provider.stop()
    try:
        response = browser.get(callback)
    finally:
        provider.start()
    assert response.status_code == 502
    assert "The identity provider could not be reached" in error_message(response)
    assert oidc_login(hub, provider, "dana")[1].status_code == 302


@pytest.mark.parametrize(
    ("status", "expected", "message"),
    [
        (401, 403, "The identity provider refused to give your user details (HTTP 401)"),
        (503, 502, "The identity provider could not be reached to read your user details"),
    ],
)
def test_userinfo_failures(
    hub: AuthHub, provider: LoopbackOIDCProvider, status: int, expected: int, message: str
) -> None:
    provider.add_user("uma")
    provider.userinfo_status = status
    try:
        _, response = oidc_login(hub, provider, "uma")
    finally:
        provider.userinfo_status = None
    assert response.status_code == expected
    assert message in error_message(response)


def test_hub_keeps_serving(hub: AuthHub) -> None:
    assert httpx.get(f"{hub.url}/hub/health").status_code == 200
    assert hub.process.poll() is None
    log = hub.log()
    assert "Uncaught exception" not in log
    assert not re.search(r"\] 500 ", log)
