"""``sciplat bench tap``: throughput and latency of the TAP service on a synthetic Object table.

Builds an N-row catalog (DuckDB; optionally copied into a private PostgreSQL + q3c cluster),
serves the API service with only the TAP plugin on loopback (uvicorn, one process) and drives it
over HTTP like a client would:

- cone-search throughput (TAP sync, random 0.05 deg cones) at 1/4/8 concurrent clients;
- sync latency of a one-row query;
- async floor: submit with PHASE=RUN, then WAIT until COMPLETED;
- rows/s streamed per output format (4 columns, MAXREC rows).

Tokens are checked by a stand-in verifier (no hub here): the hub round trip is cached by the
real service anyway, so this measures the service itself.
"""

from __future__ import annotations

import contextlib
import random
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from sciplat.config import CatalogConfig, JobsConfig, Settings
from sciplat.services.common.auth import StaticTokenVerifier

__all__ = [
    "BENCH_TOKEN",
    "bound_socket",
    "inherited_socket",
    "run_benchmark",
    "serve_app",
    "serve_tap",
    "serve_tap_process",
    "wait_until_up",
]

BENCH_TOKEN = "bench-token"
_FORMATS = ["votable", "votable/td", "csv", "tsv", "fits", "parquet"]


def build_app(settings: Settings, public: str, hub_api_url: str | None):
    """The API service with only the TAP plugin. Without *hub_api_url* only the bench token is
    accepted (benchmarks run without a hub)."""
    from sciplat.services.app import create_app, load_plugins

    app = create_app(
        settings,
        prefix="/services/api",
        public_url=public,
        hub_api_url=hub_api_url or "http://127.0.0.1:9/hub/api",
        plugins=load_plugins(["sciplat.services.tap:plugin"]),
    )
    if hub_api_url is None:
        verifier = StaticTokenVerifier(BENCH_TOKEN, "bench", {"custom:tap:read"}, ("staff",))
        app.add_middleware(_BenchAuth, verifier=verifier)
    return app


class _BenchAuth:
    """Pure ASGI middleware installing the bench verifier (Starlette's ``BaseHTTPMiddleware``
    would copy every streamed body chunk through a memory stream and skew the figures)."""

    def __init__(self, app, verifier: StaticTokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            scope["app"].state.context.verifier = self.verifier
        await self.app(scope, receive, send)


def bound_socket() -> socket.socket:
    """A listening TCP socket on a free loopback port (bound now, so no other process can take
    the port between choosing and binding it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket behind an inherited descriptor, with its real family (TCP). Not
    ``uvicorn.run(fd=...)``: uvicorn wraps a descriptor as AF_UNIX, so asyncio never sets
    TCP_NODELAY on the connections and every small keep-alive response waited ~40 ms for the
    client's delayed ACK (Nagle): a 7 ms query measured 50 ms."""
    return socket.socket(fileno=fd)


def wait_until_up(url: str, *, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll *url* until it answers 200; RuntimeError if *alive* turns false or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise RuntimeError(f"the server behind {url} exited")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up in {timeout:g} s")
        time.sleep(0.2)


@contextlib.contextmanager
def serve_app(app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve an ASGI *app* with uvicorn in a thread on a loopback socket (a fresh one unless
    given); yields ``http://127.0.0.1:<port>`` and stops the server afterwards. Reusable by any
    area's tests and benchmarks."""
    import uvicorn

    sock = sock or bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def serve_tap(settings: Settings, *, hub_api_url: str | None = None) -> Iterator[str]:
    """Run the TAP-only API service in a thread on a free loopback port; yields the TAP URL."""
    sock = bound_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}/services/api"
    with serve_app(build_app(settings, public, hub_api_url), sock):
        yield f"{public}/tap"


@contextlib.contextmanager
def serve_tap_process(settings: Settings) -> Iterator[str]:
    """The same in a separate process, so the benchmark's clients do not share its GIL. The
    listening socket is made here and inherited by the server process."""
    import shutil
    import subprocess
    import sys

    sock = bound_socket()
    port = sock.getsockname()[1]
    spec = Path(tempfile.mkdtemp(prefix="sciplat-bench-")) / "settings.json"
    spec.write_text(settings.model_dump_json())
    process = subprocess.Popen(
        [
            sys.executable,
            "-P",  # a checkout's sciplat/ in the working directory must not shadow the package
            "-m",
            "sciplat.services.tap.bench",
            str(spec),
            str(port),
            str(sock.fileno()),
        ],
        pass_fds=[sock.fileno()],
    )
    sock.close()
    url = f"http://127.0.0.1:{port}/services/api/tap"
    try:
        wait_until_up(f"{url}/availability", timeout=180, alive=lambda: process.poll() is None)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(spec.parent, ignore_errors=True)


def _serve_main(spec: str, port: str, fd: str) -> None:
    import uvicorn

    settings = Settings.model_validate_json(Path(spec).read_text())
    public = f"http://127.0.0.1:{port}/services/api"
    uvicorn.Server(uvicorn.Config(build_app(settings, public, None), log_level="warning")).run(
        sockets=[inherited_socket(int(fd))]
    )


_HEADERS = {"Authorization": f"Bearer {BENCH_TOKEN}"}
#: RESPONSEFORMAT values of our service, and of DaCHS for the same formats.
OUR_FORMATS = {name: name for name in _FORMATS}
DACHS_FORMATS = {
    "votable": "votable/b2",
    "votable/td": "votable/td",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "fits": "fits",
}


#: Sent with every query: TAP 1.0 servers (DaCHS 2.7) refuse queries without LANG, answering
#: HTTP 200 with an error document - which would otherwise be timed as a fast answer.
_TAP10 = {"LANG": "ADQL", "REQUEST": "doQuery"}


def _checked(response: httpx.Response) -> httpx.Response:
    """*response*, or RuntimeError if it is an HTTP or a VOTable (QUERY_STATUS) error."""
    response.raise_for_status()
    if b'name="QUERY_STATUS" value="ERROR"' in response.content[:4096]:
        raise RuntimeError(f"query failed: {response.text[:400]}")
    return response


def _client(headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(headers=_HEADERS if headers is None else headers, timeout=600)


def _cone_query(rng: random.Random) -> str:
    ra, dec = rng.uniform(0, 360), rng.uniform(-60, 60)
    return (
        "SELECT objectId, coord_ra, coord_dec, g_psfFlux FROM dp1.Object WHERE "
        f"CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', {ra:.5f}, {dec:.5f}, 0.05))"
        " = 1"
    )


def _throughput(
    url: str, clients: int, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with _client(headers) as client:
            done = 0
            while not done or time.monotonic() < stop:  # every client answered at least once
                done += 1
                started = time.perf_counter()
                _checked(client.get(f"{url}/sync", params={"QUERY": _cone_query(rng), **_TAP10}))
                with lock:
                    latencies.append(time.perf_counter() - started)

    began = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    elapsed = time.monotonic() - began
    return {
        "clients": clients,
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "median_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(sorted(latencies)[int(len(latencies) * 0.95) - 1] * 1000, 1),
    }


def _timed(repeat: int, action: Callable[[], None], budget: float = 30.0) -> dict[str, float]:
    """Median and best of *repeat* runs of *action* (fewer if they use up *budget* seconds)."""
    times: list[float] = []
    stop = time.monotonic() + budget
    for _ in range(repeat):
        if times and time.monotonic() > stop:
            break
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return {
        "median_ms": round(statistics.median(times) * 1000, 1),
        "min_ms": round(min(times) * 1000, 1),
        "runs": len(times),
    }


def _async_once(client: httpx.Client, url: str) -> None:
    created = client.post(
        f"{url}/async",
        data={
            "QUERY": "SELECT COUNT(*) AS n FROM dp1.Object WHERE objectId < 100",
            "PHASE": "RUN",
            **_TAP10,
        },
    )
    if created.status_code != 303 or "location" not in created.headers:
        raise RuntimeError(f"job creation answered {created.status_code}: {created.text[:300]}")
    # The job is where the 303 points (httpx does not follow redirects by itself).
    job = str(created.url.join(created.headers["location"]))
    # Some servers (DaCHS 2.7) ignore PHASE=RUN on creation; asking again is harmless.
    client.post(f"{job}/phase", data={"PHASE": "RUN"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = client.get(job, params={"WAIT": "10"}).text
        if "COMPLETED</uws:phase>" in body:
            return
        if "ERROR</uws:phase>" in body or "ABORTED</uws:phase>" in body:
            raise RuntimeError(body)
        time.sleep(0.01)  # servers whose WAIT does not block
    raise RuntimeError("async job did not complete")


def _rows_in(path: Path, fmt: str) -> int | None:
    """Rows in a downloaded result (None for BINARY/BINARY2 VOTables, which are only checked
    for ERROR and OVERFLOW markers); RuntimeError for an error document."""
    data_tail = path.read_bytes()[-4096:] if path.stat().st_size else b""
    if b'value="ERROR"' in data_tail or b"value='ERROR'" in data_tail:
        raise RuntimeError(f"query failed: {data_tail[-400:].decode(errors='replace')}")
    if fmt in ("csv", "tsv"):  # lines, less a header (the last line may lack its newline)
        with path.open("rb") as handle:
            header = handle.read(8).lower() == b"objectid"
            handle.seek(0)
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 22), b""))
        return lines + (bool(data_tail) and not data_tail.endswith(b"\n")) - header
    if fmt == "fits":
        from astropy.io import fits

        return int(fits.getheader(path, 1)["NAXIS2"])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "votable/td":  # <TR> tags, counted across chunk boundaries
        count, carry = 0, b""
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                data = carry + chunk
                count += data.count(b"<TR")
                carry = data[-2:] if not data.endswith(b"<TR") else b""
        return count
    return None


def _streaming(
    client: httpx.Client,
    url: str,
    rows: int,
    formats: dict[str, str],
    headers: dict[str, str],
) -> dict[str, Any]:
    """Rows/s per format, read by curl (a C client, so the number is the server's, not
    Python's) into a scratch file that is then checked: an error document or a truncated
    result is reported as such, never timed as a fast answer."""
    import shutil
    import subprocess

    query = f"SELECT TOP {rows} objectId, coord_ra, coord_dec, g_psfFlux FROM dp1.Object"
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("the streaming benchmark needs curl")
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sciplat-bench-stream-") as tmp:
        out = Path(tmp) / "result"
        for fmt, value in formats.items():
            params = {"QUERY": query, "RESPONSEFORMAT": value, "MAXREC": str(rows), **_TAP10}
            full = str(httpx.URL(f"{url}/sync", params=params))
            started = time.perf_counter()
            done = subprocess.run(
                [curl, "-sS", "-f", "-o", str(out), "-w", "%{size_download}", *header_args, full],
                capture_output=True,
                text=True,
            )
            elapsed = time.perf_counter() - started
            if done.returncode:
                results[fmt] = {"error": done.stderr.strip()[:400]}
                continue
            try:
                returned = _rows_in(out, fmt)
            except RuntimeError as exc:
                results[fmt] = {"error": str(exc)}
                continue
            tail = out.read_bytes()[-2048:]
            truncated = (returned is not None and returned != rows) or b"OVERFLOW" in tail
            results[fmt] = {
                "rows_per_s": round((returned or rows) / elapsed),
                "seconds": round(elapsed, 3),
                "bytes": int(float(done.stdout.strip() or 0)),
                "rows": returned if returned is not None else "not counted (no error/overflow)",
            }
            if truncated:
                results[fmt]["truncated"] = True
    return results


def _measure(
    url: str,
    stream_rows: int,
    seconds: float,
    progress: Callable[[str], None],
    *,
    formats: dict[str, str] = OUR_FORMATS,
    headers: dict[str, str] | None = None,
) -> dict:
    headers = _HEADERS if headers is None else headers
    result: dict[str, Any] = {}
    with _client(headers) as client:
        progress("warm-up")
        client.get(
            f"{url}/sync",
            params={"QUERY": _cone_query(random.Random(0)), "REQUEST": "doQuery", "LANG": "ADQL"},
        )
        progress("cone search throughput")
        result["cone"] = [_throughput(url, n, seconds, headers) for n in (1, 4, 8)]
        progress("sync latency")
        result["sync_latency"] = _timed(
            30,
            lambda: _checked(
                client.get(
                    f"{url}/sync",
                    params={"QUERY": "SELECT TOP 1 objectId FROM dp1.Object", **_TAP10},
                )
            ),
        )
        progress("async floor")
        try:
            result["async_floor"] = _timed(15, lambda: _async_once(client, url))
        except (RuntimeError, httpx.HTTPError) as exc:
            result["async_floor"] = {"error": str(exc)[:500]}
        progress("streaming")
        result["stream"] = _streaming(client, url, stream_rows, formats, headers)
    return result


def run_benchmark(
    rows: int = 1_000_000,
    *,
    backends: tuple[str, ...] = ("duckdb",),
    seconds: float = 10.0,
    stream_rows: int = 1_000_000,
    vs_dachs: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Build the catalog, serve it, measure; returns the JSON-able report."""
    from sciplat.services.tap.sample import build_sample_catalog

    streamed = min(rows, stream_rows)
    report: dict[str, Any] = {"rows": rows, "stream_rows": streamed, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="sciplat-bench-tap-") as tmp:
        root = Path(tmp)
        progress(f"building a {rows:,}-row catalog")
        started = time.perf_counter()
        # Only Object is queried: an empty Source table keeps building and loading short.
        path = build_sample_catalog(root / "data" / "dataset", objects=rows, sources_per_object=0)
        report["build_seconds"] = round(time.perf_counter() - started, 1)
        for backend in backends:
            cluster = None
            catalog = CatalogConfig(max_rows=rows + 1, default_maxrec=rows)
            if backend == "postgres":
                import duckdb

                from sciplat.services.tap.pgcluster import load_catalog, start_postgres

                progress("loading PostgreSQL (q3c index)")
                cluster = start_postgres(Path(tempfile.mkdtemp(prefix="sciplat-bench-pg-")))
                load_catalog(
                    cluster,
                    duckdb.connect(str(path), read_only=True),
                    q3c={"dp1.object": ("coord_ra", "coord_dec"), "dp1.source": ("ra", "dec")},
                )
                catalog = catalog.model_copy(
                    update={"backend": "postgres", "url": cluster.reader_url}
                )
                # Async jobs kept in PostgreSQL too, like DaCHS's (and the scale-out shape).
                jobs = JobsConfig(url=cluster.admin_url)
            else:
                jobs = JobsConfig()
            settings = Settings(data_dir=root / "data", catalog=catalog, jobs=jobs)
            try:
                with serve_tap_process(settings) as url:
                    progress(f"measuring {backend}")
                    report["backends"][backend] = _measure(url, streamed, seconds, progress)
            finally:
                if cluster is not None:
                    cluster.stop()
        if vs_dachs:
            from sciplat.services.tap.dachs import dachs_server

            with dachs_server(path, progress) as url:
                progress("measuring DaCHS")
                report["backends"]["dachs"] = _measure(
                    url, streamed, seconds, progress, formats=DACHS_FORMATS, headers={}
                )
    return report


if __name__ == "__main__":
    import sys

    _serve_main(*sys.argv[1:4])
