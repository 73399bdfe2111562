"""bench/efficacy.py's own logic: the fixed subset, the PGD curve comparison, the must list, the
replay attack, the size column, and a quick run end to end (toy surrogate, tiny keyed model)."""

import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("efficacy", ROOT / "bench" / "efficacy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["efficacy"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_subset_is_evenly_spaced_and_fixed(bench) -> None:
    idx = bench.subset_indices(65, 16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 64
    gaps = [b - a for a, b in zip(idx, idx[1:], strict=False)]
    assert max(gaps) - min(gaps) <= 1
    assert bench.subset_indices(5, 16) == [0, 1, 2, 3, 4]
    assert bench.subset_indices(65, 16) == idx


def test_results_and_must_lines_name_the_scoring_encoder(bench, tmp_path: Path) -> None:
    from perturb.training.surrogates import Surrogate, load_surrogate

    assert bench.surrogate_label(Surrogate("taef2", torch.nn.Identity())) == "TAEF2"
    path = tmp_path / "taef2-reinit-encoder.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 4, 1)), str(path))
    assert bench.surrogate_label(load_surrogate(str(path))) == "taef2-reinit-encoder"
    assert bench.surrogate_label(load_surrogate("tests.support.toy_surrogate:build")) == "build"


def test_curve_interpolation(bench) -> None:
    pts = [(80.0, 2.0), (60.0, 4.0), (40.0, 5.0)]
    g, how = bench.interpolate_curve(pts, 70.0)
    assert g == pytest.approx(3.0) and how == "interpolated"
    g, how = bench.interpolate_curve(pts, 90.0)  # less visible than every PGD point
    assert g == 2.0 and "less visible" in how
    g, how = bench.interpolate_curve(pts, 30.0)  # more visible than PGD ever is: no verdict
    assert g is None and "more visible" in how


def summary(s2: float, share: float, g85: float, gres: float, dc: float) -> dict:
    t = {name: {"G": 3.5} for name in ("none", "noise-jpeg")}
    t["jpeg85"] = {"G": g85, "dC": dc, "C": dc + 0.5}
    t["resize-jpeg"] = {"G": gres}
    return {"ssimulacra2_median": s2, "share_under_60": share, "transforms": t}


def test_must_list_pass_and_fail_lines(bench, tmp_path: Path) -> None:
    cfg = bench.Config(folder=tmp_path / "val", quick=False)
    rows = {
        "default@full": bench.Row("model default", "val", 10, summary(72, 0.0, 2.5, 1.5, 1.2)),
        "low@full": bench.Row("model low", "val", 10, summary(81, 0.0, 1, 1, 0)),
        "high@full": bench.Row("model high", "val", 10, summary(52, 0.3, 1, 1, 0)),
    }
    curve = {"model_G": 2.5, "pgd_G_at_equal": 2.0, "model_ssimulacra2": 72.0, "above": True}
    speed = {"ratio": 1500.0, "pgd_s": 30.0, "model_s": 0.02}
    large = {"infer_s": 0.2, "total_s": 0.4, "megapixels": 4.0}
    status = {c["must"]: c["status"] for c in bench.must_list(cfg, rows, curve, speed, large)}
    assert status["median SSIMULACRA2 ≥ 70 (default)"] == "PASS"
    assert status["G ≥ 2.5 under jpeg85 on TAEF2"] == "PASS"
    assert status["G ≥ 2.5 under resize-jpeg on TAEF2"] == "FAIL"
    assert status["ΔC ≥ 1 dB under jpeg85"] == "PASS"
    assert status["≥ 1000× less time than PGD-100 on the same image"] == "PASS"
    assert status["preset low ≈ median SSIMULACRA2 80 (±5)"] == "PASS"
    assert status["preset high ≈ median SSIMULACRA2 60 (±5)"] == "FAIL"
    assert any(k.startswith("inference ≤ 0.25 s") and v == "PASS" for k, v in status.items())
    # without a replay, size or model file measured, those lines say so rather than pass
    assert status["Gᵣ ≥ 2 under jpeg85 on TAEF2 (replay attack)"] == "N/A"
    assert status["size: median protected/original bytes ≤ 1.6 for JPEG inputs (default)"] == "N/A"
    assert status["model file ≤ 10 MB"] == "N/A"


def test_issue_11_must_lines(bench, tmp_path: Path) -> None:
    cfg = bench.Config(folder=tmp_path / "val", quick=False)
    s = summary(72, 0.0, 3.0, 2.6, 1.2)
    s["transforms"]["jpeg85"]["G_replay"] = 2.5  # ≥ 2 and ≥ 0.8 × 3.0
    s["transforms"]["resize-jpeg"]["G_replay"] = 2.0  # ≥ 2 but < 0.8 × 2.6
    rows = {"default@full": bench.Row("model default", "val", 10, s)}
    large = {"infer_s": 0.1, "total_s": 0.3, "megapixels": 4.0, "codec_ratio": 3.5,
             "codec_only_s": 0.09, "key_s": 0.01}
    sizes = {"JPEG": {"n": 5, "median": 1.7}, "PNG": {"n": 3, "median": 1.1},
             "all": {"n": 8, "median": 1.4}}
    checks = bench.must_list(cfg, rows, {}, {}, large, sizes, {"onnx_bytes": 11 * 2**20})
    status = {c["must"]: c["status"] for c in checks}
    assert status["G ≥ 2.5 under jpeg85 on TAEF2"] == "PASS"
    assert status["Gᵣ ≥ 2 under jpeg85 on TAEF2 (replay attack)"] == "PASS"
    assert status["Gᵣ ≥ 2 under resize-jpeg on TAEF2 (replay attack)"] == "PASS"
    assert status["Gᵣ ≥ 0.8 × G under jpeg85 (80 % survives the replay)"] == "PASS"
    assert status["Gᵣ ≥ 0.8 × G under resize-jpeg (80 % survives the replay)"] == "FAIL"
    assert status["4 MP JPEG end to end ≤ 0.35 s, key included (4.00 MP measured)"] == "PASS"
    assert status["4 MP JPEG ≤ 3× codec-only time"] == "FAIL"
    assert status["size: median protected/original bytes ≤ 1.6 for JPEG inputs (default)"] == "FAIL"
    assert status["model file ≤ 10 MB"] == "FAIL"
    note = next(c["note"] for c in checks if c["must"].startswith("size:"))
    assert "PNG 1.10 (3)" in note


def test_size_by_format_and_the_table_columns(bench) -> None:
    sizes = {
        "a.jpg": {"format": "JPEG", "ratio": {"default": 1.2, "low": 1.1}},
        "b.jpg": {"format": "JPEG", "ratio": {"default": 1.6}},
        "c.png": {"format": "PNG", "ratio": {"default": 0.9}},
    }
    got = bench.size_by_format(sizes, "default")
    assert got == {"JPEG": {"n": 2, "median": 1.4}, "PNG": {"n": 1, "median": 0.9},
                   "all": {"n": 3, "median": 1.2}}
    assert bench.size_by_format(sizes, "default", {"c.png"})["all"]["median"] == 0.9
    s = summary(72, 0.0, 3.0, 2.6, 1.2)
    s["transforms"]["jpeg85"]["G_replay"] = 2.25
    text = bench.table([bench.Row("model default", "val", 3, s, 0.1, 0.2, size=1.23)])
    head, _, row = text.splitlines()
    cells = [c.strip() for c in row.strip("|").split("|")]
    columns = [c.strip() for c in head.strip("|").split("|")]
    assert cells[columns.index("G jpeg85")] == "3.00"
    assert cells[columns.index("Gᵣ jpeg85")] == "2.25"
    assert cells[columns.index("Gᵣ none")] == "—"
    assert cells[columns.index("size")] == "1.23"


# --- the replay attack and the product's inputs ------------------------------------------------


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def artwork(h: int = 72, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 7.0)], axis=2) * 180 + 40
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def encoded(pixels: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "RGBA"])
def test_replay_undoes_a_deterministic_model_but_not_a_keyed_one(bench, models_dir, fmt) -> None:
    from perturb import inspect_marker, protect
    from perturb.training import evaluate as ev
    from tests.support.tiny_model import build_tiny_model

    x = artwork()
    if fmt == "RGBA":
        alpha = np.full(x.shape[:2], 255, np.uint8)
        alpha[:, :30] = 0
        data = encoded(np.dstack([x, alpha]), "PNG")
    else:
        data = encoded(x, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    reference = ev.decode_rgb(data)
    distances = {}
    for keyed in (True, False):
        model = str(build_tiny_model(models_dir, model_id=f"replay-{keyed}", keyed=keyed))
        protected = protect(data, model=model).data
        stripped, how = bench.pixels_only(protected)
        assert inspect_marker(stripped) is None and ("JPEG" in how) == (fmt == "JPEG")
        restored, info = bench.replay_attack(protected, model)
        assert info["runs"] == 4 and info["strength"] == 1.0 and info["strength_from"] == "marker"
        xp = ev.decode_rgb(protected)
        assert restored.shape == xp.shape == reference.shape
        if fmt == "RGBA":  # alpha kept: the transparent part stays grey
            assert (restored[:, :30] == 128).all()
        distances[keyed] = (np.linalg.norm(restored.astype(float) - reference),
                            np.linalg.norm(xp.astype(float) - reference))
    keyed_after, keyed_before = distances[True]
    plain_after, plain_before = distances[False]
    assert keyed_after >= 0.9 * keyed_before  # the key's protection survives
    # the deterministic one is undone: exactly from pixels; for JPEG down to the noise of the
    # product's re-encoding (deterministic, so this margin cannot flake)
    assert plain_after <= (0.6 if fmt == "JPEG" else 0.01) * plain_before


def test_quick_inputs_keep_format_alpha_and_jpeg_tables(bench) -> None:
    x = artwork(300, 200)
    jpeg = encoded(x, "JPEG", quality=70)
    small = bench.quick_input(jpeg, 100)
    with Image.open(io.BytesIO(small)) as a, Image.open(io.BytesIO(jpeg)) as b:
        assert a.format == "JPEG" and max(a.size) == 100 and a.quantization == b.quantization
    rgba = np.dstack([x, np.full(x.shape[:2], 200, np.uint8)])
    small = bench.quick_input(encoded(rgba, "PNG"), 100)
    with Image.open(io.BytesIO(small)) as a:
        assert a.format == "PNG" and a.mode == "RGBA" and max(a.size) == 100
    assert bench.input_format(jpeg) == "JPEG"


# --- the whole benchmark, quick, on a toy surrogate and the tiny keyed model ----------------------


def test_quick_run_end_to_end_reports_replay_and_size(bench, models_dir, tmp_path, monkeypatch):
    from tests.support.tiny_model import build_tiny_model

    folder = tmp_path / "val"
    folder.mkdir()
    x = artwork(120, 160)
    (folder / "a.jpg").write_bytes(encoded(x, "JPEG", quality=88))
    (folder / "b.png").write_bytes(encoded(artwork(100, 100, seed=1), "PNG"))
    sprite = np.dstack([artwork(96, 96, seed=2), np.full((96, 96), 255, np.uint8)])
    sprite[:, :40, 3] = 0
    (folder / "c.png").write_bytes(encoded(sprite, "PNG"))
    monkeypatch.setattr(bench, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    model = str(build_tiny_model(models_dir, model_id="bench-keyed"))
    cfg = bench.quick_config(bench.Config(folder=folder, quick=False, model=model,
                                          surrogate="tests.support.toy_surrogate:build",
                                          shared=tmp_path))  # fmt: skip
    cfg.large_mp, cfg.retime, cfg.figure_images = 0.1, False, 1
    assert bench.run(cfg) == 0
    # scored on another encoder than TAEF2: its own result files, its name in the must lines
    out = json.loads((tmp_path / "results" / "efficacy-build-quick.json").read_text())
    full = out["per_image"]["full"]
    assert set(full) == {"a.jpg", "b.png", "c.png"}
    assert {n: r["format"] for n, r in full.items()} == {"a.jpg": "JPEG", "b.png": "PNG",
                                                         "c.png": "PNG"}
    for r in full.values():
        assert set(r["ratio"]) == {"low", "default", "high"} and r["ratio"]["default"] > 0
        assert r["replay"]["runs"] == 4 and r["replay"]["strength_from"] == "marker"
        row = r["records"]["default"]["transforms"]
        assert all(math.isfinite(row[t]["G_replay"]) for t in ("none", "jpeg85", "resize-jpeg",
                                                                "noise-jpeg"))
        assert "G_replay" not in r["records"]["low"]["transforms"]["jpeg85"]
    assert full["c.png"]["transparent"] and full["c.png"]["records"]["default"]["noise"][
        "under_alpha"]
    assert out["product"]["keyed"] is True
    rows = out["rows"]
    assert rows["default@full"]["size"] > 0 and "default@full-with" in rows
    must = {c["must"]: c for c in out["must"]}
    assert must["Gᵣ ≥ 2 under jpeg85 on build (replay attack)"]["status"] in ("PASS", "FAIL")
    assert "JPEG" in must["size: median protected/original bytes ≤ 1.6 for JPEG inputs "
                          "(default)"]["note"]
    md = (tmp_path / "results" / "efficacy-build-quick.md").read_text()
    assert "Gᵣ jpeg85" in md and "| size |" in md and "keyed" in md


def test_low_high_pass_is_trimmed_to_the_deadline(bench, tmp_path: Path) -> None:
    import time

    def cfg(minutes_left: float | None):
        deadline = None if minutes_left is None else time.time() + 60 * minutes_left
        return bench.Config(folder=tmp_path, quick=False, deadline=deadline)

    # Default pass took 16 calls/image in 16 min: 1 min per call → low+high need 16 min for all.
    assert bench.pass_transforms(cfg(None), 16 * 60, 0)[0] is None
    assert bench.pass_transforms(cfg(30), 16 * 60, 0)[0] is None
    assert bench.pass_transforms(cfg(12), 16 * 60, 0)[0] == ["jpeg85", "resize-jpeg"]
    assert bench.pass_transforms(cfg(5), 16 * 60, 0)[0] == []
    assert bench.pass_transforms(cfg(30), 16 * 60, 25 * 60)[0] == []  # the reserve counts
