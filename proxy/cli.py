"""The `sfumato` command: one thin subcommand per module in `proxy.commands`.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the handler. Adding a command is adding one module to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "proxy.commands.protect_command",
    "proxy.commands.inspect_command",
    "proxy.commands.serve_command",
    "proxy.commands.pair_command",
    "proxy.commands.sites_command",
    "proxy.commands.doctor_command",
    "proxy.commands.ca_command",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfumato",
        description="Protect artwork uploads against style mimicry, transparently.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
