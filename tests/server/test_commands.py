"""`sfumato pair`, `sites`, `ca` and `doctor` through the real CLI entry point (in process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from proxy.certificate_authority import ca_cert_path, ca_fingerprint
from proxy.cli import main
from proxy.data_dir import database_path
from proxy.doctor import check_data_dir, system_trusts
from proxy.pairing import find_client, redeem_code
from proxy.settings_store import SettingsStore
from tests.proxy.e2e_support import free_port


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ca_creates_a_private_ca_and_prints_it(tmp_path: Path, capsys):
    d = tmp_path / "data"
    code, out, err = run(capsys, "ca", "--data-dir", str(d), "--path")
    assert code == 0 and out.strip() == str(ca_cert_path(d)) and "created" in err
    assert (d.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in d.iterdir())
    code, out, err = run(capsys, "ca", "--data-dir", str(d))
    assert out == ca_cert_path(d).read_text() and err == ""  # created only once
    code, out, _ = run(capsys, "ca", "--data-dir", str(d), "--fingerprint")
    assert out.strip() == ca_fingerprint(d)


def test_pair_list_and_revoke(tmp_path: Path, capsys):
    d = str(tmp_path / "data")
    code, out, _ = run(capsys, "pair", "--data-dir", d, "--json")
    assert code == 0
    pairing = json.loads(out)
    store = SettingsStore.open(database_path(Path(d)))
    try:
        token = redeem_code(store, pairing["code"], "studio laptop")
        assert token and find_client(store, token) is not None
    finally:
        store.close()
    code, out, _ = run(capsys, "pair", "--data-dir", d)
    assert code == 0 and "Pairing code:" in out and "5 minute" in out
    code, out, _ = run(capsys, "pair", "--data-dir", d, "--list")
    assert "studio laptop" in out
    [client] = json.loads(run(capsys, "pair", "--data-dir", d, "--list", "--json")[1])
    assert run(capsys, "pair", "--data-dir", d, "--revoke", str(client["id"]))[0] == 0
    assert "no paired clients" in run(capsys, "pair", "--data-dir", d, "--list")[1]
    code, out, _ = run(capsys, "pair", "--data-dir", d, "--revoke", str(client["id"]))
    assert code == 1 and "no paired client" in out
    assert run(capsys, "pair", "--data-dir", d, "--ttl", "1")[0] == 2


def test_sites_enable_strength_add_remove(tmp_path: Path, capsys):
    d = str(tmp_path / "data")

    def sites() -> dict[str, dict]:
        code, out, _ = run(capsys, "sites", "--data-dir", d, "list", "--json")
        assert code == 0
        return {s["id"]: s for s in json.loads(out)["sites"]}

    assert not sites()["deviantart"]["enabled"]
    code, out, _ = run(capsys, "sites", "--data-dir", d, "enable", "deviantart")
    assert code == 0 and "deviantart" in out
    assert sites()["deviantart"]["enabled"]
    assert run(capsys, "sites", "--data-dir", d, "strength", "deviantart", "high")[0] == 0
    assert sites()["deviantart"]["strength"] == "high"
    assert run(capsys, "sites", "--data-dir", d, "strength", "deviantart", "default")[0] == 0
    assert sites()["deviantart"]["strength"] is None
    assert run(capsys, "sites", "--data-dir", d, "strength", "all", "low")[0] == 0
    code, out, _ = run(
        capsys, "sites", "--data-dir", d, "add", "mine", "--name", "Mine", "--host", "art.example"
    )
    assert code == 0 and "[custom: art.example]" in out
    assert sites()["mine"]["enabled"]
    for bad in (
        ("enable", "nosuch"),
        ("strength", "pixiv", "max"),
        ("add", "x", "--name", "X", "--host", "x.example"),
        ("add", "new", "--name", "N", "--host", "http://bad/"),
        ("remove", "pixiv"),
    ):
        code, out, _ = run(capsys, "sites", "--data-dir", d, *bad)
        assert code == 1 and out.startswith("sfumato sites:"), bad
    assert run(capsys, "sites", "--data-dir", d, "remove", "mine")[0] == 0
    assert "mine" not in sites()
    code, out, _ = run(capsys, "sites", "--data-dir", d)  # list is the default
    assert "(low)" in out  # sites without their own strength show the global default


def test_doctor_on_a_fresh_machine_lists_each_problem_with_a_fix(tmp_path: Path, capsys):
    d = str(tmp_path / "never-started")
    args = ("--proxy-port", str(free_port()), "--api-port", str(free_port()))
    code, out, _ = run(
        capsys, "doctor", "--data-dir", d, "--model", str(tmp_path / "no.onnx"), *args
    )
    assert code == 1
    assert "FAIL model" in out and "FAIL CA certificate" in out and "FAIL proxy" in out
    assert out.count("fix:") >= 4
    # nothing set up: the guide (the one serve prints, plus "start it") comes first ...
    assert out.startswith("Sfumato is not set up yet. To set it up:\n\n1. Start it")
    # ... and the problems last, each with its fix, so they stay on screen
    tail = out[out.index("problem(s), each with its fix:"):].splitlines()[1:]
    assert tail and all(line.startswith(("FAIL ", "     fix: ")) for line in tail)
    assert tail[0].startswith("FAIL ") and tail[-1].startswith("     fix: ")


def test_doctor_prints_the_guide_only_on_request_once_set_up(
    tmp_path: Path, capsys, tiny_model: Path, data_dir: Path
):
    SettingsStore.open(database_path(data_dir)).close()
    args = ("--data-dir", str(data_dir), "--model", str(tiny_model),
            "--proxy-port", str(free_port()), "--api-port", str(free_port()))  # fmt: skip
    code, out, _ = run(capsys, "doctor", *args)
    assert code == 1  # not running, CA not trusted
    assert "Next steps" not in out and "To set it up" not in out
    assert out.splitlines()[-1].startswith("     fix: ")
    lines = out.splitlines()
    first_problem = next(i for i, line in enumerate(lines) if line.startswith("FAIL"))
    assert all(not line.startswith("ok ") for line in lines[first_problem:])
    code, out, _ = run(capsys, "doctor", *args, "--guide")
    assert out.startswith("Sfumato is set up. Next steps:")
    assert out.splitlines()[-1].startswith("     fix: ")


def test_doctor_with_state_and_model(tmp_path: Path, capsys, tiny_model: Path, data_dir: Path):
    SettingsStore.open(database_path(data_dir)).close()
    args = ("--proxy-port", str(free_port()), "--api-port", str(free_port()))
    code, out, _ = run(
        capsys, "doctor", "--data-dir", str(data_dir), "--model", str(tiny_model), "--json", *args
    )
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    for name in ("data directory", "database", "model", "CA certificate", "proxy port", "API port"):
        assert checks[name]["ok"], checks[name]
    assert not checks["proxy"]["ok"] and "sfumato serve" in checks["proxy"]["fix"]
    assert code == 1


def test_doctor_flags_loose_file_modes(data_dir: Path):
    assert check_data_dir(data_dir).ok
    os.chmod(ca_cert_path(data_dir), 0o644)
    check = check_data_dir(data_dir)
    assert not check.ok and "chmod 600" in check.fix and "644" in check.detail


def test_system_trust_lookup(tmp_path: Path, data_dir: Path):
    ours = ca_cert_path(data_dir).read_bytes()
    other = tmp_path / "other.pem"
    other.write_bytes(b"junk\n-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(other.read_bytes() + ours)
    assert system_trusts(ours, [other]) is False
    assert system_trusts(ours, [other, bundle]) is True
    assert system_trusts(ours, []) is None
