"""bench/efficacy.py's own logic: the fixed subset, the PGD curve comparison, the must list."""

import importlib.util
import sys
from pathlib import Path

import pytest

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
    assert status["G ≥ 2 under jpeg85 on TAEF2"] == "PASS"
    assert status["G ≥ 2 under resize-jpeg on TAEF2"] == "FAIL"
    assert status["ΔC ≥ 1 dB under jpeg85"] == "PASS"
    assert status["≥ 1000× less time than PGD-100 on the same image"] == "PASS"
    assert status["preset low ≈ median SSIMULACRA2 80 (±5)"] == "PASS"
    assert status["preset high ≈ median SSIMULACRA2 60 (±5)"] == "FAIL"
    assert any(k.startswith("inference ≤ 0.25 s") and v == "PASS" for k, v in status.items())


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
