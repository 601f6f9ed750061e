"""`python -m tether.server --config FILE`: the server without the rest of the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

from tether.server.app import run_server
from tether.server.config import load_server_config


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tether.server")
    parser.add_argument("--config", type=Path, required=True)
    return run_server(load_server_config(parser.parse_args().config))


if __name__ == "__main__":
    raise SystemExit(main())
