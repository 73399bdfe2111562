"""`sfumato protect` and `sfumato inspect`: outputs, exit codes, refusals, JSON, progress."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from perturb import inspect_marker, protect
from proxy.cli import build_parser, main
from tests.engine import samples

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "art"
    (src / "2025" / "sketches").mkdir(parents=True)
    (src / "cover.jpg").write_bytes(samples.jpeg_with_exif_and_icc())
    (src / "2025" / "fox.png").write_bytes(samples.rgba_png())
    (src / "2025" / "sketches" / "loop.gif").write_bytes(samples.gif_3_frames())
    (src / "2025" / "notes.txt").write_text("not an image")
    (src / ".hidden").mkdir()
    (src / ".hidden" / "x.png").write_bytes(samples.grey_png())
    return src


def contents(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_folders_are_protected_recursively_keeping_relative_paths(
    tree: Path, tmp_path: Path, tiny_model: str, capsys
) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run("protect", str(tree), "-o", str(out), "--model", tiny_model,
                          capsys=capsys)
    assert code == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["2025/fox.png", "2025/sketches/loop.gif", "cover.jpg"]
    for path in out.rglob("*.*"):
        assert inspect_marker(path.read_bytes()).model_id == "tiny-test"
    assert re.search(r"protected\s+3\n", stdout) and re.search(r"failed\s+0\n", stdout)
    assert "summary" in stdout and "mean PSNR" in stdout and "time per image" in stdout


def test_failures_are_listed_and_set_the_exit_status(tmp_path: Path, tiny_model: str, capsys):
    good = tmp_path / "good.png"
    bad = tmp_path / "bad.jpg"
    good.write_bytes(samples.grey_png())
    bad.write_bytes(samples.jpeg_with_exif_and_icc()[:500])
    code, stdout, _ = run("protect", str(good), str(bad), "-o", str(tmp_path / "out"),
                          "--model", tiny_model, capsys=capsys)
    assert code == 1
    assert (tmp_path / "out" / "good.png").exists()
    assert not (tmp_path / "out" / "bad.jpg").exists()
    [line] = [line for line in stdout.splitlines() if "bad.jpg" in line]
    assert line.startswith("FAIL") and "truncated or damaged" in line
    assert re.search(r"failed\s+1\n", stdout)


def test_existing_outputs_and_inputs_are_not_overwritten(tmp_path: Path, tiny_model: str, capsys):
    src = tmp_path / "a.png"
    src.write_bytes(samples.grey_png())
    original = src.read_bytes()
    code, stdout, _ = run("protect", str(src), "-o", str(tmp_path), "--model", tiny_model,
                          capsys=capsys)
    assert code == 1 and "it would replace itself; use --overwrite" in stdout
    assert src.read_bytes() == original

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    code, stdout, _ = run("protect", str(src), "-o", str(out), "--model", tiny_model,
                          capsys=capsys)
    assert code == 1 and "exists" in stdout
    assert (out / "a.png").read_bytes() == b"precious"

    code, _, _ = run("protect", str(src), "-o", str(out), "--model", tiny_model, "--overwrite",
                     capsys=capsys)
    assert code == 0
    assert inspect_marker((out / "a.png").read_bytes()) is not None


def test_json_report(tree: Path, tmp_path: Path, tiny_model: str, capsys) -> None:
    (tree / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, stdout, stderr = run("protect", str(tree), "-o", str(tmp_path / "o"), "--json",
                               "--model", tiny_model, "--strength", "high", capsys=capsys)
    assert code == 1
    doc = json.loads(stdout)  # nothing but JSON on stdout
    assert doc["summary"]["files"] == 4
    assert doc["summary"]["protected"] == 3 and doc["summary"]["failed"] == 1
    assert doc["strength"] == 1.6 and doc["model"] == "tiny-test"
    by_name = {Path(f["input"]).name: f for f in doc["files"]}
    assert by_name["broken.png"]["error_type"] == "CorruptImage"
    assert by_name["fox.png"]["ok"] and by_name["fox.png"]["format"] == "PNG"
    assert by_name["fox.png"]["psnr"] > 30
    assert "\r" not in stderr


def test_no_ai_reservation_flag(tmp_path: Path, tiny_model: str, capsys) -> None:
    src = tmp_path / "a.webp"
    src.write_bytes(samples.webp_lossy())
    code, _, _ = run("protect", str(src), "-o", str(tmp_path / "o"), "--model", tiny_model,
                     "--no-ai-reservation", capsys=capsys)
    assert code == 0
    code, stdout, _ = run("inspect", str(tmp_path / "o" / "a.webp"), "--json", capsys=capsys)
    entry = json.loads(stdout)[0]
    assert entry["protected"] and not entry["ai_training_reserved"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--strength", "wild"], "unknown strength"), (["--jobs", "0"], "--jobs")],
)
def test_usage_errors_exit_2(tmp_path: Path, tiny_model: str, capsys, args, message) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(samples.grey_png())
    code, _, stderr = run("protect", str(src), "-o", str(tmp_path / "o"), "--model", tiny_model,
                          *args, capsys=capsys)
    assert code == 2 and message in stderr


def test_missing_model_exit_2(tmp_path: Path, capsys) -> None:
    code, _, stderr = run("protect", str(tmp_path), "-o", str(tmp_path / "o"), "--model",
                          str(tmp_path / "missing.onnx"), capsys=capsys)
    assert code == 2 and "missing.onnx" in stderr


def test_missing_input_is_a_failure(tmp_path: Path, tiny_model: str, capsys) -> None:
    code, stdout, _ = run("protect", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"),
                          "--model", tiny_model, capsys=capsys)
    assert code == 1 and "no such file" in stdout


def test_parallel_jobs_give_the_same_files(tree: Path, tmp_path: Path, tiny_model: str, capsys):
    run("protect", str(tree), "-o", str(tmp_path / "one"), "--model", tiny_model, "--seed", "9",
        capsys=capsys)
    run("protect", str(tree), "-o", str(tmp_path / "two"), "--model", tiny_model, "--jobs", "3",
        "--seed", "9", capsys=capsys)
    for path in (tmp_path / "one").rglob("*.*"):
        twin = tmp_path / "two" / path.relative_to(tmp_path / "one")
        assert twin.read_bytes() == path.read_bytes()


def test_seed_makes_outputs_reproducible_and_is_never_printed(
    tmp_path: Path, tiny_model: str, capsys
) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(samples.rgba_png())
    seed = "170141183460469231731687303715884105727"  # long: cannot turn up by chance
    outputs = {}
    for name, extra in (("s1", ["--seed", seed]), ("s2", ["--seed", seed]), ("f1", []), ("f2", [])):
        code, stdout, stderr = run("protect", str(src), "-o", str(tmp_path / name), "--model",
                                   tiny_model, "--json", *extra, capsys=capsys)
        assert code == 0 and seed not in stdout + stderr
        outputs[name] = (tmp_path / name / "a.png").read_bytes()
        assert seed.encode() not in outputs[name]
    assert outputs["s1"] == outputs["s2"]
    assert len({outputs["s1"], outputs["f1"], outputs["f2"]}) == 3  # fresh secrets by default


def test_seed_is_documented_as_unsafe_and_validated(tmp_path: Path, tiny_model: str, capsys):
    with pytest.raises(SystemExit):
        main(["protect", "--help"])
    assert "UNSAFE" in " ".join(capsys.readouterr().out.split())
    for bad in ("-1", "x"):
        with pytest.raises(SystemExit) as info:
            main(["protect", str(tmp_path), "-o", str(tmp_path / "o"), "--seed", bad])
        assert info.value.code == 2 and "--seed" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal(tmp_path: Path, tiny_model: str, monkeypatch, capsys):
    src = tmp_path / "a.png"
    src.write_bytes(samples.grey_png())

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    code = main(["protect", str(src), "-o", str(tmp_path / "o"), "--model", tiny_model])
    assert code == 0
    assert "[" in term.getvalue() and "1/1" in term.getvalue()


def test_subprocess_non_tty_has_no_progress(tree: Path, tmp_path: Path, tiny_model: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "protect", str(tree), "-o", str(tmp_path / "o"),
         "--model", tiny_model],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "1/3" not in proc.stderr
    assert proc.stdout.count("ok ") == 3

    proc = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "inspect", str(tmp_path / "o" / "cover.jpg"),
         str(tree / "cover.jpg"), str(tmp_path / "absent.png")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "protected by Sfumato (model tiny-test" in lines[0] and "reserved: yes" in lines[0]
    assert "not protected" in lines[1] and "reserved: no" in lines[1]
    assert "cannot read" in lines[2]


def test_inspect_text_and_json(tmp_path: Path, tiny_model: str, capsys) -> None:
    from perturb import protect

    marked = tmp_path / "m.gif"
    marked.write_bytes(protect(samples.gif_3_frames(), model=tiny_model, strength="low").data)
    other = tmp_path / "t.txt"
    other.write_text("hello")
    code, stdout, _ = run("inspect", str(marked), str(other), "--json", capsys=capsys)
    assert code == 0
    entries = json.loads(stdout)
    assert entries[0]["protected"] and entries[0]["model"] == "tiny-test"
    assert entries[0]["strength"] == 0.5 and entries[0]["format"] == "GIF"
    assert entries[0]["date"]
    assert entries[1]["format"] is None and not entries[1]["protected"]
    code, stdout, _ = run("inspect", str(other), capsys=capsys)
    assert "not a supported image" in stdout


def test_inspect_says_when_the_pixels_changed_after_protection(
    tmp_path: Path, tiny_model: str, capsys
) -> None:
    import io

    from PIL import Image

    from perturb import protect

    protected = protect(samples.rgba_png(), model=tiny_model).data
    edited = Image.open(io.BytesIO(protected))
    edited.load()
    edited.putpixel((3, 3), (1, 2, 3, 255))  # an editor keeps the XMP, the pixels change
    buffer = io.BytesIO()
    edited.save(buffer, "PNG", pnginfo=_xmp_of(protected))
    path = tmp_path / "edited.png"
    path.write_bytes(buffer.getvalue())
    code, stdout, _ = run("inspect", str(path), capsys=capsys)
    assert code == 0
    assert "marker present but the pixels were changed after protection: not protected" in stdout
    code, stdout, _ = run("inspect", str(path), "--json", capsys=capsys)
    entry = json.loads(stdout)[0]
    assert entry["protected"] is False and entry["marker"] == "pixels-changed"


def _xmp_of(png: bytes):
    from PIL import PngImagePlugin

    from perturb.containers import png_xmp

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", png_xmp(png).decode("utf-8"))
    return info


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_mode_a_plain_write_gives(tmp_path: Path, tiny_model: str, capsys, umask):
    src = tmp_path / "a.png"
    src.write_bytes(samples.grey_png())
    previous = os.umask(umask)
    try:
        code, _, _ = run("protect", str(src), "-o", str(tmp_path / "out"), "--model", tiny_model,
                         capsys=capsys)
    finally:
        os.umask(previous)
    assert code == 0
    assert stat.S_IMODE((tmp_path / "out" / "a.png").stat().st_mode) == 0o666 & ~umask
    assert not list((tmp_path / "out").glob(".sfumato-*"))  # no temporary file left behind


def test_a_replaced_output_keeps_its_mode(tmp_path: Path, tiny_model: str, capsys):
    src = tmp_path / "a.png"
    src.write_bytes(samples.grey_png())
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old")
    os.chmod(out / "a.png", 0o640)
    code, _, _ = run("protect", str(src), "-o", str(out), "--overwrite", "--model", tiny_model,
                     capsys=capsys)
    assert code == 0 and inspect_marker((out / "a.png").read_bytes()) is not None
    assert stat.S_IMODE((out / "a.png").stat().st_mode) == 0o640


def test_already_protected_files_are_skipped_and_counted(tree: Path, tmp_path: Path,
                                                        tiny_model: str, capsys):
    first = tmp_path / "first"
    assert run("protect", str(tree), "-o", str(first), "--model", tiny_model, capsys=capsys)[0] == 0
    before = contents(first)
    again = tmp_path / "again"
    code, stdout, _ = run("protect", str(first), "-o", str(again), "--model", tiny_model,
                          capsys=capsys)
    assert code == 0
    assert not again.exists()  # nothing written
    assert contents(first) == before
    skips = [line for line in stdout.splitlines() if line.startswith("skip")]
    assert len(skips) == 3
    date = inspect_marker(before[first / "cover.jpg"]).date
    assert f"already protected by tiny-test on {date}; --force to protect again" in skips[0]
    assert re.search(r"skipped\s+3 \(already protected\)\n", stdout)
    assert re.search(r"protected\s+0\n", stdout) and re.search(r"failed\s+0\n", stdout)

    code, stdout, _ = run("protect", str(first), "-o", str(again), "--model", tiny_model,
                          "--json", capsys=capsys)
    doc = json.loads(stdout)
    assert doc["summary"]["skipped"] == 3 and doc["summary"]["failed"] == 0
    assert {f["status"] for f in doc["files"]} == {"skipped"} and all(f["ok"] for f in doc["files"])

    code, stdout, _ = run("protect", str(first), "-o", str(again), "--model", tiny_model,
                          "--force", capsys=capsys)
    assert code == 0 and re.search(r"protected\s+3\n", stdout)
    assert (again / "cover.jpg").read_bytes() != before[first / "cover.jpg"]


def test_output_folder_equal_to_input_folder_is_refused_with_the_fix(
    tree: Path, tiny_model: str, capsys
):
    before = contents(tree)
    code, stdout, stderr = run("protect", str(tree), "-o", str(tree), "--model", tiny_model,
                               capsys=capsys)
    assert code == 2 and stdout == ""
    assert "also the output folder" in stderr
    assert "another folder" in stderr and "--overwrite to replace them in place" in stderr
    assert contents(tree) == before

    # in place on request; a second run skips them instead of growing them again
    code, stdout, _ = run("protect", str(tree), "-o", str(tree) + "/", "--overwrite",
                          "--model", tiny_model, capsys=capsys)
    assert code == 0 and re.search(r"protected\s+3\n", stdout)
    protected = {p: data for p, data in contents(tree).items() if p.suffix != ".txt"}
    del protected[tree / ".hidden" / "x.png"]  # hidden files are left alone
    assert all(inspect_marker(data) is not None for data in protected.values())
    code, stdout, _ = run("protect", str(tree), "-o", str(tree), "--overwrite",
                          "--model", tiny_model, capsys=capsys)
    assert code == 0 and re.search(r"skipped\s+3 ", stdout)
    assert {p: p.read_bytes() for p in protected} == protected


def test_each_error_is_said_once_in_words(tmp_path: Path, tiny_model: str, capsys):
    text = tmp_path / "notes.jpg"
    text.write_bytes(b"hello, there")
    missing = tmp_path / "nope.jpg"
    code, stdout, stderr = run("protect", str(text), str(missing), "-o", str(tmp_path / "o"),
                               "--model", tiny_model, capsys=capsys)
    assert code == 1
    assert stdout.count(str(missing)) == 1
    assert f"FAIL  {missing}: no such file or folder\n" in stdout
    assert stdout.count(str(text)) == 1
    assert f"FAIL  {text}: not an image (only JPEG, PNG" in stdout
    assert "b'" not in stdout + stderr and "failures" not in stdout
    assert re.search(r"failed\s+2\n", stdout)


def test_an_output_that_is_a_file_is_refused_with_the_fix(tmp_path: Path, tiny_model: str,
                                                          capsys):
    src = tmp_path / "a.png"
    src.write_bytes(samples.grey_png())
    (tmp_path / "out.png").write_bytes(b"keep")
    code, stdout, stderr = run("protect", str(src), "-o", str(tmp_path / "out.png"),
                               "--model", tiny_model, capsys=capsys)
    assert code == 2 and stdout == ""
    assert stderr == (
        f"sfumato protect: {tmp_path / 'out.png'} is a file, not a folder. Give -o a folder for "
        "the protected copies (it is created if missing), e.g. -o protected\n"
    )
    assert (tmp_path / "out.png").read_bytes() == b"keep"


def test_two_inputs_with_one_output_name_say_so_once(tree: Path, tmp_path: Path,
                                                     tiny_model: str, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "cover.jpg").write_bytes(samples.grey_png())
    out = tmp_path / "o"
    code, stdout, _ = run("protect", str(tree / "cover.jpg"), str(other / "cover.jpg"), "-o",
                          str(out), "--model", tiny_model, capsys=capsys)
    assert code == 1
    assert stdout.count(str(other / "cover.jpg")) == 1
    assert (
        f"FAIL  {other / 'cover.jpg'}: its copy would be {out / 'cover.jpg'}, like the copy of "
        f"{tree / 'cover.jpg'}; protect the two into separate folders\n"
    ) in stdout
    assert re.search(r"protected\s+1\n", stdout) and re.search(r"failed\s+1\n", stdout)
    assert inspect_marker((out / "cover.jpg").read_bytes()) is not None


def test_a_closed_pipe_ends_quietly(tree: Path, tmp_path: Path, tiny_model: str):
    """`sfumato protect art/ -o out/ | head -1`: no traceback once the reader has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "protect", str(tree), "-o", str(tmp_path / "o"),
             "--model", tiny_model],
            stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141  # as a shell reports a command ended by a closed pipe
    # it stops, as other tools do; what it wrote is whole
    written = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert written and all(inspect_marker(p.read_bytes()) is not None for p in written)


def test_sizes_are_printed_per_file_and_in_total(tree: Path, tmp_path: Path, tiny_model: str,
                                                 capsys):
    code, stdout, _ = run("protect", str(tree), "-o", str(tmp_path / "o"), "--model", tiny_model,
                          "--json", capsys=capsys)
    doc = json.loads(stdout)
    total_in = sum(f["bytes_in"] for f in doc["files"])
    total_out = sum(f["bytes_out"] for f in doc["files"])
    images = [p for p in contents(tree) if p.suffix != ".txt" and ".hidden" not in p.parts]
    assert doc["summary"]["bytes_in"] == total_in == sum(p.stat().st_size for p in images)
    outputs = contents(tmp_path / "o")
    assert doc["summary"]["bytes_out"] == total_out == sum(map(len, outputs.values()))
    assert doc["summary"]["size_ratio"] == round(total_out / total_in, 3)

    code, stdout, _ = run("protect", str(tree / "cover.jpg"), "-o", str(tmp_path / "t"),
                          "--model", tiny_model, capsys=capsys)
    size_in, size_out = (tree / "cover.jpg").stat().st_size, (tmp_path / "t" / "cover.jpg").stat(
    ).st_size
    change = f"{size_in / 1000:.0f} kB -> {size_out / 1000:.0f} kB (×{size_out / size_in:.2f})"
    [line] = [line for line in stdout.splitlines() if line.startswith("ok")]
    assert line.endswith(change + ")")
    assert re.search(rf"size\s+{re.escape(change)}\n", stdout)


def test_a_file_growing_past_a_site_limit_is_warned(tmp_path: Path, tiny_model: str, capsys,
                                                    monkeypatch):
    from proxy.commands import protect_command

    src = tmp_path / "a.png"
    src.write_bytes(samples.grey_png())
    protected = protect(src.read_bytes(), model=tiny_model).data
    limit = (len(src.read_bytes()) + len(protected)) // 2  # between the two sizes
    monkeypatch.setattr(protect_command, "SIZE_LIMITS",
                        (protect_command.SizeLimit("Example", limit, "it refuses the upload"),))
    code, stdout, _ = run("protect", str(src), "-o", str(tmp_path / "o"), "--model", tiny_model,
                          capsys=capsys)
    assert code == 0
    assert "      warning: now over Example's" in stdout
    assert "limit: it refuses the upload" in stdout
    assert re.search(r"over a limit\s+1 file\(s\)", stdout)


def test_size_warnings_follow_the_cited_limits():
    from proxy.commands.protect_command import size_warnings

    [bluesky] = size_warnings("JPEG", 1_900_000, 2_100_000)
    assert "Bluesky's 2 MB limit" in bluesky
    [x] = size_warnings("PNG", 4_000_000, 5_500_000)  # Bluesky's was passed before protecting
    assert "X's 5 MB limit" in x
    assert size_warnings("GIF", 4_000_000, 5_500_000) == ()  # X takes bigger GIFs on the web
    assert size_warnings("JPEG", 2_100_000, 2_400_000) == ()  # already over before protecting
    assert size_warnings("JPEG", 100_000, 200_000) == ()


def test_every_option_with_a_value_states_its_default():
    """`--help` of every command says what happens when an option is left out."""
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    checked = 0
    for name, command_parser in sub.choices.items():
        choosers = {a for g in command_parser._mutually_exclusive_groups for a in g._group_actions}
        for action in command_parser._actions:
            # one value that stands in when the option is left out (not: repeatable options,
            # flags, or options that pick what the command does, such as `pair --revoke ID`)
            if (
                not action.option_strings
                or type(action) is not argparse._StoreAction
                or action.required
                or action in choosers
            ):
                continue
            checked += 1
            option = f"sfumato {name} {action.option_strings[0]}"
            assert "default" in (action.help or "").lower(), option
    assert checked > 10


def test_a_protected_file_carrying_more_than_its_pixels_is_protected_again(
        tree: Path, tmp_path: Path, tiny_model: str, capsys):
    """The marker vouches for the pixels only: a protected JPEG with the original appended after
    its end is not skipped as already protected (the proxy does the same)."""
    first = tmp_path / "first"
    assert run("protect", str(tree / "cover.jpg"), "-o", str(first), "--model", tiny_model,
               capsys=capsys)[0] == 0
    smuggled = tmp_path / "smuggled" / "cover.jpg"
    smuggled.parent.mkdir()
    original = (tree / "cover.jpg").read_bytes()
    smuggled.write_bytes((first / "cover.jpg").read_bytes() + original)
    out = tmp_path / "out"
    code, stdout, _ = run("protect", str(smuggled), "-o", str(out), "--model", tiny_model,
                          capsys=capsys)
    assert code == 0 and re.search(r"protected\s+1\n", stdout)
    assert re.search(r"skipped\s+0\n", stdout) and not stdout.startswith("skip")
    assert original not in (out / "cover.jpg").read_bytes()
