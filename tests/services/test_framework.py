"""The API service framework against a real hub: auth, scopes, error forms."""

from __future__ import annotations

import time

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Depends

from sciplat.services.app import create_app
from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import UsageError
from sciplat.services.common.params import DaliParams, dali_params
from sciplat.services.plugin import ServicePlugin

pytestmark = pytest.mark.integration


def _probe_router() -> APIRouter:
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(user: AuthenticatedUser = Depends(require_scope("custom:tap:read"))) -> dict:
        return {"name": user.name, "groups": list(user.groups)}

    @router.api_route("/echo", methods=["GET", "POST"])
    async def echo(params: DaliParams = Depends(dali_params)) -> dict:
        if params.get("fail"):
            raise UsageError(f"Bad FAIL value {params.get('fail')!r}")
        return {"lang": params.single("LANG"), "pos": params.getlist("pos")}

    return router


PROBE = ServicePlugin(name="probe", router_factory=_probe_router, error_format="votable")


@pytest.fixture
async def probe_client(test_hub):
    app = create_app(test_hub.settings, hub_api_url=test_hub.api_url, plugins=[PROBE])
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


def test_health_is_anonymous_through_the_proxy(test_hub):
    response = httpx.get(f"{test_hub.api_service_url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_discovery_needs_a_token(test_hub):
    response = httpx.get(f"{test_hub.api_service_url}/discovery")
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]
    assert "Basic" in response.headers["www-authenticate"]
    assert response.json()["error"] == "AuthenticationError"


def test_discovery_with_bearer_and_basic(test_hub):
    token = test_hub.token_for("alice")
    response = httpx.get(
        f"{test_hub.api_service_url}/discovery", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    doc = response.json()
    assert doc["services"]["tap"]["url"] == f"{test_hub.settings.public_url}/services/api/tap"
    basic = httpx.get(f"{test_hub.api_service_url}/discovery", auth=("token", token))
    assert basic.status_code == 200


def test_bad_and_expired_tokens_are_refused(test_hub):
    bad = httpx.get(
        f"{test_hub.api_service_url}/discovery", headers={"Authorization": "Bearer nope"}
    )
    assert bad.status_code == 401
    short = test_hub.token_for("bob", expires_in=1)
    time.sleep(2.5)
    expired = httpx.get(
        f"{test_hub.api_service_url}/discovery", headers={"Authorization": f"Bearer {short}"}
    )
    assert expired.status_code == 401


async def test_scope_is_enforced_with_a_votable_error(probe_client, test_hub):
    alice = test_hub.token_for("alice")
    ok = await probe_client.get(
        "/services/api/probe/whoami", headers={"Authorization": f"Bearer {alice}"}
    )
    assert ok.status_code == 200
    assert ok.json() == {"name": "alice", "groups": ["users"]}

    carol = test_hub.token_for("carol")
    denied = await probe_client.get(
        "/services/api/probe/whoami", headers={"Authorization": f"Bearer {carol}"}
    )
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/x-votable+xml")
    assert 'name="QUERY_STATUS" value="ERROR"' in denied.text
    assert "custom:tap:read" in denied.text

    # A token of alice's that was made without the scope does not carry it.
    narrow = test_hub.token_for("alice", scopes=["custom:image:read"])
    narrowed = await probe_client.get(
        "/services/api/probe/whoami", headers={"Authorization": f"Bearer {narrow}"}
    )
    assert narrowed.status_code == 403


async def test_dali_parameters_are_case_insensitive_and_merged(probe_client):
    response = await probe_client.post(
        "/services/api/probe/echo?POS=CIRCLE+1+2+3", data={"lang": "ADQL", "pos": "RANGE 0 1 0 1"}
    )
    assert response.json() == {"lang": "ADQL", "pos": ["CIRCLE 1 2 3", "RANGE 0 1 0 1"]}
    twice = await probe_client.get("/services/api/probe/echo?LANG=a&lang=b")
    assert twice.status_code == 400, twice.text
    assert "LANG given 2 times" in twice.text
    failed = await probe_client.get("/services/api/probe/echo?FAIL=<x>")
    assert failed.status_code == 400
    assert "UsageError: Bad FAIL value" in failed.text
    assert "&lt;x&gt;" in failed.text
