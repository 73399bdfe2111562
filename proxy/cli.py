"""The `sfumato` command: one thin subcommand per module in `proxy.commands`.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the handler. Adding a command is adding one module to COMMANDS.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

COMMANDS = [
    "proxy.commands.protect_command",
    "proxy.commands.inspect_command",
    "proxy.commands.serve_command",
    "proxy.commands.pair_command",
    "proxy.commands.sites_command",
    "proxy.commands.doctor_command",
    "proxy.commands.ca_command",
]
SUBCOMMANDS = tuple(name.rsplit(".", 1)[1].removesuffix("_command") for name in COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfumato",
        description="Protect artwork uploads against style mimicry, transparently.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def command_name() -> str:
    """How the user's shell runs this `sfumato`, for every instruction we print.

    `sfumato` when the shell finds this very installation on PATH; otherwise the absolute path of
    the installed script (after `make run`: <clone>/.venv/bin/sfumato, which is not on PATH), so
    a printed command works as printed, from any folder.
    """
    script = Path(sysconfig.get_path("scripts")) / ("sfumato.exe" if os.name == "nt" else "sfumato")
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m proxy.cli"
    found = shutil.which("sfumato")
    if found and os.path.samefile(found, script):
        return "sfumato"
    return shlex.quote(str(script.absolute()))


def command(*words: str, data_dir: Path | None = None) -> str:
    """A runnable command line: `command("pair")` -> "/home/ana/sfumato/.venv/bin/sfumato pair".

    With `data_dir` other than the default, `--data-dir` follows the subcommand, so the command
    acts on the same state as the one that printed it.
    """
    parts = [command_name(), *words[:1]]
    if not is_default_data_dir(data_dir):
        parts += ["--data-dir", shlex.quote(str(Path(data_dir).expanduser().absolute()))]
    return " ".join([*parts, *words[1:]])


def is_default_data_dir(data_dir: Path | None) -> bool:
    """Whether `data_dir` is the one a command uses without --data-dir (so `make run` uses it)."""
    from proxy.data_dir import default_data_dir

    return data_dir is None or Path(data_dir).expanduser().absolute() == default_data_dir()


def make_run_or(data_dir: Path | None) -> str:
    """The aside that `make run` also starts Sfumato, only where it would use `data_dir`."""
    return " (or `make run` in the Sfumato folder)" if is_default_data_dir(data_dir) else ""


_QUOTED_COMMAND = re.compile(rf"`sfumato (?=(?:{'|'.join(SUBCOMMANDS)})\b)")


def runnable(text: str) -> str:
    """Rewrite the `sfumato ...` commands quoted in a message (from the settings store, the CA,
    the engine) into commands this shell can run."""
    name = command_name()
    return text if name == "sfumato" else _QUOTED_COMMAND.sub(f"`{name} ", text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`sfumato protect ... | head`): stop quietly, as other tools do,
        # instead of a traceback (and a second one when Python flushes stdout on exit)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
