"""Executed notebook -> standalone HTML (nbconvert's lab template)."""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

__all__ = ["render_html"]

_lock = threading.Lock()
#: Scripts nbconvert loads from a CDN (require.js, MathJax). The platform may have no way out to
#: the internet, and a blocking script that never loads leaves the page blank; outputs (text,
#: tables, PNG plots) need none of them.
_REMOTE_SCRIPT = re.compile(r'<script src="https?://[^"]*"[^>]*>\s*</script>')


@functools.cache
def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


def render_html(notebook: dict[str, Any], *, title: str = "") -> str:
    """The notebook as one HTML page (outputs, plots inline)."""
    import nbformat

    nb = nbformat.from_dict(notebook)
    resources = {"metadata": {"name": title or "notebook"}}
    with _lock:  # exporters keep per-conversion state
        body, _ = _exporter().from_notebook_node(nb, resources=resources)
    return _REMOTE_SCRIPT.sub("", body)
