"""Where `sfumato serve` keeps its state: one private directory per user.

The directory holds the settings database and the mitmproxy CA (it is mitmproxy's `confdir`), so
backing it up is copying one folder. It is created 0700 and every file in it 0600: the CA private
key lets whoever reads it intercept the user's TLS traffic.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import platformdirs

DATA_DIR_ENV = "SFUMATO_DATA_DIR"
DATABASE_NAME = "sfumato.sqlite3"


def default_data_dir() -> Path:
    """`$SFUMATO_DATA_DIR`, else the platform's user data dir (~/.local/share/sfumato)."""
    if env := os.environ.get(DATA_DIR_ENV):
        return Path(env).expanduser().absolute()
    return Path(platformdirs.user_data_dir("sfumato", appauthor=False)).absolute()


def resolve_data_dir(value: str | os.PathLike[str] | None) -> Path:
    """The data directory a command should use: the `--data-dir` value or the default.

    Absolute, so the paths and commands printed with it work from any folder.
    """
    return Path(value).expanduser().absolute() if value else default_data_dir()


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The `--data-dir` option every command that touches the state shares."""
    parser.add_argument(
        "--data-dir",
        help=f"state directory (default: ${DATA_DIR_ENV}, else the platform's user data dir)",
    )


def database_path(data_dir: Path) -> Path:
    return data_dir / DATABASE_NAME


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Create files readable by their owner only while inside this block."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700."""
    with private_umask():
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def make_private(path: Path) -> None:
    """chmod 0600 if the file exists (files created by libraries that ignore our umask)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o600)
