"""Run a notebook cell by cell in a kernel of a running Jupyter server (a user's lab).

This is what Rubin's mobu does: start a kernel through the server's REST API
(``POST /api/kernels``), send each code cell as an ``execute_request`` over the kernel's
websocket (``/api/kernels/<id>/channels``) and collect the replies, then shut the kernel down.
The websocket protocol is :mod:`jupyter_kernel_client`'s; this module adds per-cell timing,
one deadline for the whole notebook (a cell still running at the deadline is interrupted and
reported) and the first failure's cell, exception and traceback.

For a JupyterHub lab, *server_url* is ``<hub>/user/<name>`` and *token* a hub token of that
user (sent as ``Authorization: token ...`` on the REST calls and the websocket).
"""

from __future__ import annotations

import ast
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LabRun", "run_in_server"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Asked of a new kernel (user expressions of an empty, silent request): who it runs as.
_IDENTITY = {
    "hub_user": "__import__('os').environ.get('JUPYTERHUB_USER')",
    "unix_user": "__import__('getpass').getuser()",
}


@dataclass
class LabRun:
    """What came back from one notebook run in a server's kernel."""

    status: str  # succeeded, failed, timeout
    kernel_seconds: float | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    kernel: str = ""
    #: Who the kernel runs as: its ``JUPYTERHUB_USER`` and Unix user name.
    identity: dict[str, Any] = field(default_factory=dict)


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _kinds(outputs: list[dict[str, Any]]) -> list[str]:
    """What a cell showed: stream names and the MIME types of rich outputs (no payloads)."""
    kinds: list[str] = []
    for out in outputs:
        if out.get("output_type") == "stream":
            kinds.append(f"stream:{out.get('name')}")
        elif out.get("output_type") == "error":
            kinds.append("error")
        else:
            kinds.extend(out.get("data") or {})
    return kinds


def _error(index: int | None, outputs: list[dict[str, Any]], reply_status: str) -> dict[str, Any]:
    failure = next((o for o in outputs if o.get("output_type") == "error"), {})
    traceback = "\n".join(_ANSI.sub("", line) for line in failure.get("traceback") or [])
    return {
        "index": index,
        "ename": failure.get("ename") or reply_status,
        "evalue": failure.get("evalue") or f"the kernel answered {reply_status!r}",
        "traceback": traceback,
    }


def run_in_server(
    server_url: str,
    token: str,
    notebook: dict[str, Any],
    *,
    timeout: float = 1800,
    kernel_name: str | None = None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> LabRun:
    """Execute *notebook*'s code cells in a new kernel of the server at *server_url*.

    The kernel is the notebook's kernelspec when the server has it, else the server's default.
    Never raises for a notebook fault (the result says failed/timeout); raises ``RuntimeError``
    when the server refuses the kernel."""
    from jupyter_kernel_client import JupyterKernelClient

    server_url = server_url.rstrip("/")
    headers = {"Authorization": f"token {token}"}
    name = kernel_name or _kernel_for(server_url, headers, notebook)
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    client = JupyterKernelClient(
        server_url=server_url, token=None, headers=headers, client_kwargs={"timeout": 120}
    )
    result = LabRun(status="failed", kernel=name)
    try:
        try:
            client.start(name=name, timeout=120)
            reply = client.execute_interactive(
                "", silent=True, user_expressions=_IDENTITY, output_hook=lambda _msg: None,
                timeout=max(deadline - time.monotonic(), 1),
            )  # fmt: skip
        except Exception as exc:
            raise RuntimeError(f"no kernel {name!r} in {server_url}: {exc}") from exc
        result.kernel_seconds = round(time.monotonic() - t0, 4)
        result.identity = _values(reply["content"].get("user_expressions") or {})
        for index, cell in enumerate(notebook.get("cells", [])):
            source = _source(cell)
            if cell.get("cell_type") != "code" or not source.strip():
                continue
            started = time.monotonic()
            left = deadline - started
            timing: dict[str, Any] = {"index": index, "seconds": None, "outputs": []}
            result.cells.append(timing)
            try:
                if left <= 0:
                    raise TimeoutError
                reply = client.execute(source, timeout=left, stop_on_error=True)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    client.interrupt(timeout=30)
                result.status = "timeout"
                result.error = {
                    "index": index,
                    "ename": "Timeout",
                    "evalue": f"The run was stopped after its timeout of {timeout:g} s, "
                    f"while cell {index} was executing",
                    "traceback": "",
                }
                return result
            timing["seconds"] = round(time.monotonic() - started, 4)
            timing["outputs"] = _kinds(reply["outputs"])
            if on_cell is not None:
                on_cell(timing)
            if reply["status"] != "ok":
                result.error = _error(index, reply["outputs"], str(reply["status"]))
                return result
        result.status = "succeeded"
        return result
    finally:
        with contextlib.suppress(Exception):
            client.stop(shutdown_kernel=True, timeout=30)


def _values(expressions: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for key, answer in expressions.items():
        with contextlib.suppress(KeyError, ValueError, SyntaxError):
            values[key] = ast.literal_eval(answer["data"]["text/plain"])
    return values


def _kernel_for(server_url: str, headers: dict[str, str], notebook: dict[str, Any]) -> str:
    """The notebook's kernelspec if the server has it, else the server's default kernel."""
    import httpx

    response = httpx.get(f"{server_url}/api/kernelspecs", headers=headers, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(
            f"{server_url}/api/kernelspecs answered HTTP {response.status_code}: "
            f"{response.text[:200]}"
        )
    specs = response.json()
    wanted = notebook.get("metadata", {}).get("kernelspec", {}).get("name")
    if wanted in specs.get("kernelspecs", {}):
        return wanted
    return specs["default"]
