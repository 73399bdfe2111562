"""bench/transparency.py's logic: which images it picks, and that its PGD keeps to what shows."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perturb.training.surrogates import taef2_encoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    path = ROOT / "bench" / "transparency.py"
    spec = importlib.util.spec_from_file_location("transparency", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["transparency"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_picks_only_images_with_transparency_evenly_spaced(bench, tmp_path: Path) -> None:
    rgba = np.full((16, 16, 4), 200, np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a_opaque_rgba.png")  # alpha all 255
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "b_opaque.png")
    rgba[:8, :, 3] = 0
    for i in range(4):
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"c_sprite{i}.png")
    assert [p.name for p in bench.pick(tmp_path, 2)] == ["c_sprite0.png", "c_sprite2.png"]
    for p in tmp_path.glob("c_*"):
        p.unlink()
    with pytest.raises(SystemExit, match="no image with transparency"):
        bench.pick(tmp_path, 2)


def test_attack_on_visible_pixels_leaves_the_background_alone(bench) -> None:
    torch.manual_seed(0)
    enc = taef2_encoder(n=8).eval()
    x = np.random.default_rng(0).integers(40, 215, (32, 32, 3)).astype(np.uint8)
    alpha = np.zeros((32, 32), np.uint8)
    alpha[:, :16] = 255
    xp, seconds = bench.attack(enc, x, alpha, 8, steps=3)
    d = np.abs(xp.astype(int) - x)
    assert d[:, 16:].max() == 0 and 0 < d[:, :16].max() <= 8 and seconds > 0
    whole, _ = bench.attack(enc, x, None, 8, steps=3)
    assert np.abs(whole.astype(int) - x)[:, 16:].max() > 0
