"""The systemd unit docs/self-hosting.md gives passes `systemd-analyze verify` without a warning.

The unit starts /opt/sfumato/.venv/bin/sfumato (the guide clones the repository there); the test
points it at this checkout's script, which is what verify checks exists and is executable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "self-hosting.md"
SCRIPT = Path(sysconfig.get_path("scripts")) / "sfumato"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd); "
    "the self-hosting unit is not verified here",
)


def unit_from_guide() -> str:
    match = re.search(
        r"`/etc/systemd/system/sfumato\.service`:\n\n```ini\n(.*?)```", GUIDE.read_text(), re.S
    )
    assert match, "the guide's unit block was not found"
    return match.group(1)


def verify(tmp_path: Path, unit: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sfumato.service"
    path.write_text(unit.replace("/opt/sfumato/.venv/bin/sfumato", str(SCRIPT)))
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_guide_unit_verifies_cleanly(tmp_path: Path):
    unit = unit_from_guide()
    assert "ExecStart=/opt/sfumato/.venv/bin/sfumato serve" in unit
    proc = verify(tmp_path, unit)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == ""


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        (("ProtectSystem=strict", "ProtectSytem=strict"), "Unknown key"),
        (("SystemCallFilter=@system-service", "SystemCallFilter=@nonsense"), "system call"),
        (("ExecStart=/opt/sfumato/.venv/bin/sfumato", "ExecStart=/nowhere/sfumato"), "/nowhere"),
    ],
)
def test_verify_catches_a_broken_unit(tmp_path: Path, broken: tuple[str, str], complaint: str):
    """The check above can fail: verify reports each of these mistakes."""
    proc = verify(tmp_path, unit_from_guide().replace(*broken))
    assert complaint in proc.stderr
