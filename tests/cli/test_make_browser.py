"""`make browser` (run by `make test`): apt only when a browser is missing, only what the tests
need, said before it happens; a user who is not root is told the one command to run.

`apt-get` and `id` are replaced by recording stubs on PATH, so nothing is installed here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def stub(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def make_browser(tmp_path: Path, *, uid: int, chromium: bool, firefox: bool):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    stub(bin_dir, "id", f'[ "$1" = -u ] && echo {uid} || exec /usr/bin/id "$@"\n')
    stub(
        bin_dir,
        "apt-get",
        f'echo "$@" >> {calls}\n'
        'case "$*" in *" -s "*) echo "Inst libfoo (1 Debian)"; echo "Inst chromium (2 Debian)";;'
        " esac\n",
    )
    browsers = {}
    for name, present in (("CHROMIUM_PATH", chromium), ("FIREFOX_PATH", firefox)):
        path = tmp_path / name.lower()
        if present:
            stub(tmp_path, path.name, "exit 0\n")
        browsers[name] = str(path)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **browsers}
    proc = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "browser"], env=env, capture_output=True, text=True,
        timeout=60,
    )
    apt = calls.read_text().splitlines() if calls.exists() else []
    return proc, apt


@pytest.mark.parametrize("uid", [0, 1000])
def test_browsers_present_means_no_apt_at_all(tmp_path: Path, uid: int):
    proc, apt = make_browser(tmp_path, uid=uid, chromium=True, firefox=True)
    assert proc.returncode == 0, proc.stderr
    assert apt == [] and proc.stdout == ""


def test_root_installs_only_what_is_missing_without_recommends_saying_so_first(tmp_path: Path):
    proc, apt = make_browser(tmp_path, uid=0, chromium=False, firefox=True)
    assert proc.returncode == 0, proc.stderr
    assert apt[0] == "update -qq"
    installs = [call for call in apt if call.startswith("install")]
    assert installs and all("--no-install-recommends" in call for call in installs)
    assert all(call.endswith(" chromium") for call in installs)  # firefox-esr is there already
    assert any(" -y " in call for call in installs)  # non-interactive, as CI needs
    lines = proc.stdout.splitlines()
    assert "missing: chromium" in lines[0] and "end-to-end tests" in lines[0]
    assert "2 packages: libfoo chromium" in lines[1]  # what apt will install, before it does


def test_a_user_who_is_not_root_gets_the_one_command_to_run(tmp_path: Path):
    proc, apt = make_browser(tmp_path, uid=1000, chromium=False, firefox=False)
    assert proc.returncode != 0
    assert apt == []
    assert "missing: chromium firefox-esr" in proc.stdout
    assert "\n  sudo make browser\n" in proc.stdout
