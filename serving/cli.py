"""The `serving` command. argv is parsed here and nowhere else."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from serving.errors import ServingError

COMMANDS = [
    "serving.commands.serve",
    "serving.commands.demo",
    "serving.commands.up",
    "serving.commands.control",
    "serving.commands.loadtest",
    "serving.commands.storage",
    "serving.commands.transform",
    "serving.commands.render",
    "serving.commands.convert",
    "serving.commands.operator",
    "serving.commands.router",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serving", description="Model-serving gateway (KServe-compatible).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ServingError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
