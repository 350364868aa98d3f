"""The benchmarks' stand-in verifier accepts its one token and nothing else."""

from __future__ import annotations

import pytest

from sciplat.services.common.auth import StaticTokenVerifier
from sciplat.services.common.errors import AuthenticationError


async def test_static_verifier_accepts_only_its_token():
    verifier = StaticTokenVerifier("t0k", "bench", {"custom:tap:read"}, ("staff",))
    user = await verifier.verify("t0k")
    assert (user.name, user.groups, user.token) == ("bench", ("staff",), "t0k")
    assert user.has_scope("custom:tap:read") and not user.has_scope("custom:image:read")
    with pytest.raises(AuthenticationError):
        await verifier.verify("t0k-forged")
