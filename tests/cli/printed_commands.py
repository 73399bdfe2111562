"""Find the `sfumato ...` commands in what the product prints, and check that each runs as printed.

A command counts when `sfumato` (or a path ending in it) is followed by a subcommand. It works as
printed when its program is on PATH or is an executable file, its subcommand answers `--help`,
and every option it names exists.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from proxy.cli import SUBCOMMANDS, build_parser

_COMMAND = re.compile(
    rf"(?P<program>[^\s`'\"(=]*sfumato)[ ]+(?P<sub>{'|'.join(SUBCOMMANDS)})(?=[\s`'\")]|$)"
    r"(?P<rest>[^`\n)\"]*)"
)


@dataclass(frozen=True)
class Printed:
    program: str
    subcommand: str
    options: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join([self.program, self.subcommand, *self.options])


def printed_commands(text: str) -> list[Printed]:
    """Every `sfumato SUBCOMMAND ...` in `text`, with the options it names."""
    found = []
    for match in _COMMAND.finditer(text):
        rest = match["rest"].split(" #", 1)[0]  # a shell comment is not part of the command
        options = tuple(word.split("=", 1)[0] for word in rest.split() if word.startswith("--"))
        found.append(Printed(match["program"], match["sub"], options))
    return found


@functools.cache
def _options(subcommand: str) -> frozenset[str]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = [sub.choices[subcommand]]
    names: set[str] = set()
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            names.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return frozenset(names)


@functools.cache
def _answers_help(program: str, subcommand: str) -> bool:
    proc = subprocess.run([program, subcommand, "--help"], capture_output=True, timeout=60)
    return proc.returncode == 0


def problems(text: str, root: Path | None = None) -> list[str]:
    """Why each printed command would not work as printed (empty: they all do).

    `root`: for a document read from the repository, the folder its relative program paths start
    from (bare `sfumato` is then wrong: `make run` does not put it on PATH). Without it, a program
    must be `sfumato` on PATH or an absolute path.
    """
    found = []
    for command in printed_commands(text):
        program = command.program
        if program == "sfumato" and root is not None:
            found.append(f"{command}: `sfumato` is not on PATH after `make run`")
            continue
        if program == "sfumato":
            resolved = shutil.which("sfumato")
            if resolved is None:
                found.append(f"{command}: `sfumato` is not on PATH here")
                continue
        else:
            path = Path(program)
            if not path.is_absolute():
                if root is None:
                    found.append(f"{command}: a relative path works only from one folder")
                    continue
                path = root / path
            if not (path.is_file() and os.access(path, os.X_OK)):
                found.append(f"{command}: {program} is not an executable file")
                continue
            resolved = str(path)
        if not _answers_help(resolved, command.subcommand):
            found.append(f"{command}: `{command.subcommand} --help` fails")
        unknown = [o for o in command.options if o not in _options(command.subcommand)]
        if unknown:
            found.append(f"{command}: no option {', '.join(unknown)}")
    return found
