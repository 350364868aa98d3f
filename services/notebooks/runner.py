"""Execute one notebook with nbclient and report as it goes (runs as the requesting user).

The service starts ``<image python> -m sciplat.services.notebooks.runner`` as the user's Unix
account, writes one JSON envelope on its stdin and reads JSON lines back::

    in:  {"notebook": {...}, "cell_timeout": 600, "discovery": {...} | null}
    out: {"event": "kernel", "seconds": 1.2, "total": 7}        kernel is up, 7 code cells
         {"event": "cell", "index": 3, "seconds": 0.4, "outputs": [...], "execution_count": 2}
         {"event": "error", "index": 5, "ename": "...", "evalue": "...", "traceback": "..."}
         {"event": "done", "ok": true}

Everything else this process or its kernel prints goes to stderr, so stdout stays clean. The
kernel inherits the environment (the user's token, ``SCIPLAT_DISCOVERY``), so ``import sciplat``
in the notebook acts with the user's rights.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, TextIO

# jsonschema (via nbformat) imports rfc3987_syntax when present, which builds a grammar for
# ~1.7 s; the runner never checks IRI formats, so skip it (it is an optional import there).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError  # noqa: E402


def _emitter(stream: TextIO):
    def emit(**event: Any) -> None:
        stream.write(json.dumps(event, default=str) + "\n")
        stream.flush()

    return emit


def run(envelope: dict[str, Any], emit, scratch: str) -> int:
    """Execute the envelope's notebook; 0 when every cell ran, 1 otherwise."""
    # reads() (not from_dict) joins sources stored as lists of lines, as nbclient expects.
    nb = nbformat.reads(json.dumps(envelope["notebook"]), as_version=4)
    # The service started us in the working directory (it may sit below directories this
    # account cannot traverse, so the kernel inherits it as "." rather than by path).
    cwd = "."
    if envelope.get("discovery"):
        path = os.path.join(scratch, "discovery.json")
        with open(path, "w") as fh:
            json.dump(envelope["discovery"], fh)
        os.environ["SCIPLAT_DISCOVERY"] = path
    started: dict[int, float] = {}
    t0 = time.monotonic()
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())

    def notebook_start(notebook: Any) -> None:
        emit(event="kernel", seconds=round(time.monotonic() - t0, 4), total=code_cells)

    def cell_start(cell: Any, cell_index: int) -> None:
        if cell.cell_type != "code" or not cell.source.strip():
            return  # nbclient skips these without executing them
        started[cell_index] = time.monotonic()
        emit(event="start", index=cell_index)

    def cell_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        seconds = time.monotonic() - started.get(cell_index, time.monotonic())
        emit(
            event="cell",
            index=cell_index,
            seconds=round(seconds, 4),
            outputs=cell.get("outputs", []),
            execution_count=cell.get("execution_count"),
        )

    client = NotebookClient(
        nb,
        timeout=int(envelope.get("cell_timeout") or 600),
        kernel_name=envelope.get("kernel_name") or "python3",
        resources={"metadata": {"path": cwd}},
        allow_errors=False,
        record_timing=False,
        on_notebook_start=notebook_start,
        on_cell_start=cell_start,
        on_cell_executed=cell_executed,
    )
    failing = {"index": None}

    def cell_error(cell: Any, cell_index: int, execute_reply: Any) -> None:
        failing["index"] = cell_index

    client.on_cell_error = cell_error
    try:
        client.execute()
    except CellExecutionError as exc:
        emit(
            event="error",
            index=failing["index"],
            ename=exc.ename,
            evalue=exc.evalue,
            traceback=str(exc.traceback),
        )
        emit(event="done", ok=False)
        return 1
    except (CellTimeoutError, DeadKernelError) as exc:
        index = max(started) if started else None
        emit(event="error", index=index, ename=type(exc).__name__, evalue=str(exc), traceback="")
        emit(event="done", ok=False)
        return 1
    emit(event="done", ok=True)
    return 0


def main() -> int:
    # Keep a private copy of stdout for events; fd 1 (inherited by the kernel) becomes stderr.
    events = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    emit = _emitter(events)
    scratch = tempfile.mkdtemp(prefix="sciplat-run-")
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", scratch)
    try:
        envelope = json.loads(sys.stdin.read())
        return run(envelope, emit, scratch)
    except Exception as exc:  # reported to the service, which shows it as the run's error
        emit(event="error", index=None, ename=type(exc).__name__, evalue=str(exc), traceback="")
        emit(event="done", ok=False)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
