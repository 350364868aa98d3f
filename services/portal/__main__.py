"""``python -m sciplat.services.portal --settings FILE``: what the hub's managed service runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from sciplat.services.portal.serve import serve

parser = argparse.ArgumentParser(prog="sciplat.services.portal")
parser.add_argument("--settings", type=Path, required=True)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=None)
args = parser.parse_args()
serve(args.settings, host=args.host, port=args.port)
