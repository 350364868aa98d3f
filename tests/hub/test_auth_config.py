"""``configure_auth`` and the rules behind it, without starting a hub.

OIDC discovery is read from the real loopback provider over HTTP.
"""

from __future__ import annotations

import asyncio
import pwd
from collections.abc import Iterator

import pytest
from oidc_provider import LoopbackOIDCProvider
from traitlets.config import Config

from sciplat.config import HubConfig, OIDCConfig, Settings
from sciplat.hub.accounts import GECOS
from sciplat.hub.auth import (
    IdentityConfigError,
    SciplatNativeAuthenticator,
    SciplatOIDCAuthenticator,
    configure_auth,
    reserved_names,
    username_problem,
)
from sciplat.hub.auth.usernames import BASELINE_RESERVED
from support.net import free_port


@pytest.fixture(scope="module")
def provider() -> Iterator[LoopbackOIDCProvider]:
    provider = LoopbackOIDCProvider(
        free_port(), client_id="hub", client_secret="s", redirect_uris=["http://x/cb"]
    ).start()
    yield provider
    provider.stop()


def oidc_settings(issuer: str, **oidc: object) -> Settings:
    return Settings(
        hub=HubConfig(
            authenticator="oidc",
            oidc=OIDCConfig(**{"issuer": issuer, "client_id": "hub", **oidc}),
        )
    )


def test_native_configuration() -> None:
    c = Config()
    settings = Settings(hub=HubConfig(admin_users=["boss"], minimum_password_length=14))
    configure_auth(c, settings)
    assert c.JupyterHub.authenticator_class is SciplatNativeAuthenticator
    assert c.Authenticator.admin_users == {"boss"}
    auth = SciplatNativeAuthenticator(config=c, add_new_table=False)
    assert auth.minimum_password_length == 14
    assert auth.check_common_password is True
    assert auth.open_signup is False
    assert auth.allow_all is True
    assert auth.manage_groups is False
    assert auth.default_groups == ["users"]


def test_open_signup_is_passed_through() -> None:
    c = Config()
    configure_auth(c, Settings(hub=HubConfig(open_signup=True)))
    assert SciplatNativeAuthenticator(config=c, add_new_table=False).open_signup is True


def test_reserved_admin_name_is_a_config_error() -> None:
    with pytest.raises(IdentityConfigError, match=r"hub\.admin_users: The username 'root'"):
        configure_auth(Config(), Settings(hub=HubConfig(admin_users=["root"])))


def test_oidc_endpoints_come_from_discovery(
    provider: LoopbackOIDCProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCIPLAT_OIDC_CLIENT_SECRET", "from-env")
    c = Config()
    settings = oidc_settings(provider.issuer, admin_groups=["ops"], groups_claim="roles")
    configure_auth(c, settings)
    assert c.JupyterHub.authenticator_class is SciplatOIDCAuthenticator
    auth = SciplatOIDCAuthenticator(config=c)
    assert auth.authorize_url == f"{provider.issuer}/authorize"
    assert auth.token_url == f"{provider.issuer}/token"
    assert auth.userdata_url == f"{provider.issuer}/userinfo"
    assert auth.client_secret == "from-env"
    assert auth.oauth_callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
    assert auth.manage_groups is True
    assert auth.auth_state_groups_key == "oauth_user.roles"
    assert auth.admin_groups == {"ops"}
    assert auth.allow_all is True
    assert auth.username_claim == "preferred_username"


def test_oidc_settings_win_over_discovery_and_env(
    provider: LoopbackOIDCProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCIPLAT_OIDC_CLIENT_SECRET", "from-env")
    c = Config()
    configure_auth(
        c,
        oidc_settings(
            provider.issuer,
            client_secret="from-yaml",
            token_url="https://idp.example/token",
            allowed_groups=["astro"],
        ),
    )
    auth = SciplatOIDCAuthenticator(config=c)
    assert auth.client_secret == "from-yaml"
    assert auth.token_url == "https://idp.example/token"
    assert auth.authorize_url == f"{provider.issuer}/authorize"
    assert auth.allowed_groups == {"astro"}
    assert auth.allow_all is False


def test_oidc_without_discovery_when_all_endpoints_are_given() -> None:
    c = Config()
    urls = {f"{k}_url": f"https://idp.invalid/{k}" for k in ("authorize", "token", "userdata")}
    configure_auth(c, oidc_settings("https://idp.invalid", client_secret="s", **urls))
    assert SciplatOIDCAuthenticator(config=c).userdata_url == "https://idp.invalid/userdata"


def test_unreachable_issuer_is_a_config_error() -> None:
    with pytest.raises(IdentityConfigError, match="cannot read the discovery document"):
        configure_auth(
            Config(), oidc_settings(f"http://127.0.0.1:{free_port()}", client_secret="s")
        )


def test_issuer_must_match_the_discovery_document(provider: LoopbackOIDCProvider) -> None:
    real = provider.issuer
    provider.issuer = "https://impostor.example"  # what the document will claim
    try:
        with pytest.raises(IdentityConfigError, match="the provider calls itself"):
            configure_auth(Config(), oidc_settings(real, client_secret="s"))
    finally:
        provider.issuer = real


def test_oidc_secret_is_required(
    provider: LoopbackOIDCProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCIPLAT_OIDC_CLIENT_SECRET", raising=False)
    with pytest.raises(IdentityConfigError, match="SCIPLAT_OIDC_CLIENT_SECRET is not set"):
        configure_auth(Config(), oidc_settings(provider.issuer))


def test_admin_groups_must_not_be_default_groups(provider: LoopbackOIDCProvider) -> None:
    with pytest.raises(IdentityConfigError, match="every user would be admin"):
        configure_auth(
            Config(), oidc_settings(provider.issuer, client_secret="s", admin_groups=["users"])
        )


def make_oidc(**traits: object) -> SciplatOIDCAuthenticator:
    c = Config()
    urls = {f"{k}_url": f"https://idp.invalid/{k}" for k in ("authorize", "token", "userdata")}
    configure_auth(c, oidc_settings("https://idp.invalid", client_secret="s", **urls))
    for name, value in traits.items():
        setattr(c.SciplatOIDCAuthenticator, name, value)
    return SciplatOIDCAuthenticator(config=c)


@pytest.mark.parametrize(
    ("claim", "groups"),
    [
        (["staff", "/survey/team", "", "/"], {"staff", "survey/team"}),
        ("staff", {"staff"}),
        (None, set()),
        (42, set()),
    ],
)
def test_claim_groups_normalization(claim: object, groups: set[str]) -> None:
    auth = make_oidc()
    assert auth.claim_groups({"oauth_user": {"groups": claim}}) == groups
    assert asyncio.run(auth.get_user_groups({"oauth_user": {"groups": claim}})) == groups | {
        "users"
    }


def test_allowed_groups_look_at_the_provider_groups_only() -> None:
    auth = make_oidc(allowed_groups={"astro"}, allow_all=False)

    def model(groups: list[str]) -> dict:
        state = {"oauth_user": {"groups": groups}}
        return {"name": "x", "admin": None, "auth_state": state, "groups": [*groups, "users"]}

    assert asyncio.run(auth.check_allowed("x", model(["astro"]))) is True
    assert asyncio.run(auth.check_allowed("x", model(["other"]))) is False
    # "users" is a default group, which everyone gets; it must not open the door.
    auth.allowed_groups = {"users"}
    assert asyncio.run(auth.check_allowed("x", model([]))) is False


def test_username_rule() -> None:
    assert username_problem("alice") is None
    assert username_problem("a-b_c9") is None
    assert username_problem("a" * 32) is None
    assert "not allowed" in username_problem("a" * 33)
    assert "not allowed" in username_problem("Alice")
    assert "not allowed" in username_problem("-x")
    assert "not allowed" in username_problem("a.b")
    assert "reserved" in username_problem("root")
    assert "reserved" in username_problem("guest", extra_reserved={"guest"})
    assert username_problem("") == "Choose a username."


def test_reserved_names_follow_this_machine() -> None:
    names = reserved_names()
    for entry in pwd.getpwall():
        sciplat_account = entry.pw_gecos.split(",")[0] == GECOS
        if entry.pw_uid < 1000 or entry.pw_uid > 59999 or not sciplat_account:
            assert entry.pw_name in names
        elif entry.pw_name not in BASELINE_RESERVED:
            # Accounts sciplat created for its users stay usable after a restart.
            assert entry.pw_name not in names
    assert {"root", "daemon", "nobody", "www-data", "users", "sciplat"} <= names
