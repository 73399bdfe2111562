"""Every `sfumato ...` instruction the product prints, or the docs give, works as printed.

`make run` installs the command in .venv/bin, which is not on PATH: printed instructions name the
installed script by its absolute path (or plain `sfumato` when the shell finds this very one), and
the documents say `.venv/bin/sfumato` from the repository folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
from pathlib import Path

import pytest

from proxy.cli import command, command_name, main
from proxy.data_dir import default_data_dir
from proxy.guidance import next_steps
from tests.cli.printed_commands import printed_commands, problems
from tests.proxy.e2e_support import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sysconfig.get_path("scripts")) / "sfumato"
DOCUMENTS = ["README.md", "README.es.md", "docs/extension.md", "docs/self-hosting.md"]

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="needs the installed `sfumato`")


def output(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    main(list(args))
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_the_command_is_named_as_the_shell_finds_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert command_name() == str(SCRIPT.absolute())
    (tmp_path / "sfumato").symlink_to(SCRIPT)  # this installation on PATH, as pipx would put it
    assert command_name() == "sfumato"
    (tmp_path / "sfumato").unlink()
    (tmp_path / "sfumato").write_text("#!/bin/sh\n")  # another sfumato first on PATH
    (tmp_path / "sfumato").chmod(0o755)
    assert command_name() == str(SCRIPT.absolute())


def test_data_dir_follows_the_subcommand_unless_it_is_the_default(tmp_path: Path):
    assert command("sites", "enable", "x", data_dir=tmp_path) == (
        f"{command_name()} sites --data-dir {tmp_path} enable x"
    )
    assert command("pair", data_dir=default_data_dir()) == f"{command_name()} pair"


def test_a_relative_data_dir_is_printed_absolute(tmp_path: Path, monkeypatch, capsys):
    """`--data-dir state` in the commands Sfumato prints would only work from this folder."""
    monkeypatch.chdir(tmp_path)
    ports = ("--proxy-port", str(free_port()), "--api-port", str(free_port()))
    text = output(capsys, "doctor", "--data-dir", "state", *ports)
    commands = printed_commands(text)
    assert commands and all("--data-dir" in c.options for c in commands)
    assert f"--data-dir {tmp_path / 'state'} " in text and "--data-dir state" not in text
    assert f"{tmp_path / 'state'}/mitmproxy-ca-cert.pem" in text  # the CA path the guide gives
    monkeypatch.chdir(ROOT)
    assert problems(text) == []


@pytest.mark.parametrize("custom_dir", [True, False])
def test_make_run_is_offered_only_where_it_starts_this_data_dir(
    tmp_path: Path, monkeypatch, capsys, custom_dir: bool
):
    """`make run` starts the default data dir: with --data-dir DIR it would start another."""
    monkeypatch.setenv("SFUMATO_DATA_DIR", str(tmp_path / "default"))
    chosen = ("--data-dir", str(tmp_path / "other")) if custom_dir else ()
    ports = ("--proxy-port", str(free_port()), "--api-port", str(free_port()))
    text = output(capsys, "doctor", *chosen, *ports)
    assert "Sfumato is not set up yet" in text and "FAIL proxy: Sfumato is not running" in text
    assert ("make run" in text) is not custom_dir


@pytest.mark.parametrize("started", [True, False])
@pytest.mark.parametrize("custom_dir", [True, False])
def test_the_setup_guide(tmp_path: Path, started: bool, custom_dir: bool):
    data_dir = tmp_path / "data" if custom_dir else default_data_dir()
    text = next_steps(data_dir / "ca.pem", data_dir=data_dir, started=started)
    commands = printed_commands(text)
    assert {c.subcommand for c in commands} >= {"ca", "pair", "sites", "doctor"}
    assert ("serve" in {c.subcommand for c in commands}) is not started
    assert problems(text) == []
    if custom_dir:
        assert all("--data-dir" in c.options for c in commands)


def test_doctor_pair_sites_and_serve_say_runnable_commands(tmp_path: Path, capsys):
    d = str(tmp_path / "data")
    ports = ("--proxy-port", str(free_port()), "--api-port", str(free_port()))
    texts = {
        "doctor, nothing set up": output(capsys, "doctor", "--data-dir", d, *ports),
        "doctor --guide": output(capsys, "doctor", "--data-dir", d, "--guide", *ports),
        "pair --list, none": output(capsys, "pair", "--data-dir", d, "--list"),
        "pair --revoke, unknown": output(capsys, "pair", "--data-dir", d, "--revoke", "99"),
        "sites enable, unknown": output(capsys, "sites", "--data-dir", d, "enable", "nosuch"),
        "serve --set, stored": output(
            capsys, "serve", "--data-dir", d, "--set", "sfumato_sites=pixiv", *ports
        ),
        "doctor, set up": output(capsys, "doctor", "--data-dir", d, *ports),
    }
    for what, text in texts.items():
        assert problems(text) == [], what
    mentioned = {c.subcommand for text in texts.values() for c in printed_commands(text)}
    assert mentioned >= {"serve", "ca", "pair", "sites", "doctor"}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_documents_give_commands_that_run_from_the_repository(document: str):
    text = (ROOT / document).read_text()
    # the home-server guide clones the repository into /opt/sfumato
    text = text.replace("/opt/sfumato/", "")
    assert printed_commands(text), f"{document} names no command"
    assert problems(text, root=ROOT) == []


@pytest.mark.parametrize("document", ["README.md", "README.es.md"])
def test_the_readme_puts_sfumato_on_path_as_it_says(document: str, tmp_path: Path, monkeypatch):
    """The one-line link the quick start gives works on a fresh account (no ~/.local/bin yet),
    twice, and then the product names itself plain `sfumato`."""
    [line] = re.findall(r"`([^`]*ln -s[^`]*~/\.local/bin/?)`", (ROOT / document).read_text())
    home = tmp_path / "home"
    home.mkdir()
    for _ in range(2):  # following the step again must not fail either
        proc = subprocess.run(["bash", "-c", line], cwd=ROOT, env={**os.environ, "HOME": str(home)},
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    link = home / ".local" / "bin" / "sfumato"
    assert link.is_symlink() and link.resolve() == SCRIPT.resolve()
    monkeypatch.setenv("PATH", str(link.parent))
    assert command_name() == "sfumato"


def test_extension_texts_give_commands_that_run_from_the_repository():
    for locale in ("en", "es"):
        path = ROOT / "extension/src/_locales" / locale / "messages.json"
        messages = json.loads(path.read_text())
        text = "\n".join(m["message"] for m in messages.values())
        assert problems(text, root=ROOT) == [], locale


def test_the_check_itself_finds_commands_that_would_fail(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert problems("run `sfumato pair` now")  # not on PATH here
    assert problems("sfumato: run sfumato doctor") and not problems("sfumato-pattern-v2 model")
    assert problems(f"{tmp_path}/nowhere/sfumato pair")
    assert problems(f"{SCRIPT} pair --no-such-option")
    assert problems(".venv/bin/sfumato pair")  # relative, outside a document
    assert problems("sfumato doctor", root=ROOT)  # bare, in a document
    assert not problems(f"{SCRIPT} sites --data-dir x enable deviantart")
    assert not problems("`sfumato pair: --ttl must be between 10 and 3600`")  # an error prefix
    assert os.environ["PATH"] == str(tmp_path)
