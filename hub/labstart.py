"""The lab's entry point: ``python -m sciplat.hub.labstart`` = jupyterhub-singleuser, faster.

``rfc3987_syntax`` builds an Earley grammar when imported (about 2 s of CPU here); jsonschema
imports it only to offer the optional ``iri`` format checks, which no Jupyter event schema
uses. Blocking the import before the server starts makes jsonschema skip those checks and
takes 2 s off every lab start.
"""

from __future__ import annotations

import sys


def main() -> None:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
    from jupyterhub.singleuser import main as singleuser

    sys.exit(singleuser())


if __name__ == "__main__":
    main()
