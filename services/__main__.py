"""``python -m sciplat.services --settings FILE``: run the API service."""

import argparse
from pathlib import Path

from sciplat.services.serve import serve

parser = argparse.ArgumentParser(prog="python -m sciplat.services")
parser.add_argument("--settings", type=Path, required=True, help="settings JSON or sciplat.yaml")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=None)
args = parser.parse_args()
serve(args.settings, host=args.host, port=args.port)
