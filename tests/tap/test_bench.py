"""``sciplat bench tap`` end to end on a tiny table (the figures themselves are not asserted:
they depend on the machine; what is checked is that every measurement ran and was verified)."""

from __future__ import annotations

import pytest

from sciplat.services.tap.bench import bound_socket, inherited_socket, run_benchmark


@pytest.mark.integration
def test_bench_runs_every_measurement() -> None:
    messages: list[str] = []
    report = run_benchmark(
        3000, backends=("duckdb",), seconds=0.3, stream_rows=2000, progress=messages.append
    )
    result = report["backends"]["duckdb"]
    assert [point["clients"] for point in result["cone"]] == [1, 4, 8]
    assert all(point["requests"] > 0 for point in result["cone"])
    assert result["sync_latency"]["runs"] == 30
    assert result["async_floor"]["runs"] >= 1, result["async_floor"]
    for fmt, measured in result["stream"].items():
        assert "error" not in measured and not measured.get("truncated"), (fmt, measured)
        if isinstance(measured["rows"], int):
            assert measured["rows"] == 2000
    assert report["stream_rows"] == 2000 and "streaming" in messages


def test_bound_socket_holds_its_port() -> None:
    """The port is bound when chosen: nobody else can take it before the server starts."""
    first = bound_socket()
    try:
        import socket

        with socket.socket() as other, pytest.raises(OSError):
            other.bind(first.getsockname())
    finally:
        first.close()


def test_inherited_socket_is_tcp() -> None:
    """The bench server's socket, rebuilt from its inherited descriptor, is TCP (asyncio sets
    TCP_NODELAY on its connections only then; as AF_UNIX small responses waited for delayed
    ACKs)."""
    import os
    import socket

    first = bound_socket()
    try:
        sock = inherited_socket(os.dup(first.fileno()))
        with sock:
            assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
            assert sock.proto == socket.IPPROTO_TCP
            assert sock.getsockname() == first.getsockname()
    finally:
        first.close()
