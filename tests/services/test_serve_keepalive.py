"""The API services keep idle proxy connections open longer than the proxy reuses them."""

from __future__ import annotations

import uvicorn

from sciplat.config import Settings
from sciplat.services import serve


def test_services_outlast_the_proxys_idle_sockets(monkeypatch):
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    serve.run(lambda settings: object(), Settings(), host="127.0.0.1", port=1)
    # configurable-http-proxy's upstream agent keeps idle sockets without a limit: a server
    # closing them after uvicorn's default 5 s races the next request (a 503 to the user)
    assert seen["timeout_keep_alive"] >= 60
    assert seen["forwarded_allow_ips"] == "127.0.0.1"
