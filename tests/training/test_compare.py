"""compare.py: checkpoints run like the engine (padded, cropped back, 8-bit, a key per call),
images as stored (alpha kept, JPEGs re-encoded with their own tables), and the replay attack
tells a keyed perturbation from a deterministic one."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from perturb.training.calibrate import Sample
from perturb.training.compare import ValImage, load_images, main, score_model, torch_perturb
from tests.support.random_generator import random_generator


def painting(h: int = 96, w: int = 112, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.3 * np.sin(5 * xx), 0.3 + 0.4 * yy, 0.6 - 0.3 * xx * yy], -1)
    img += 0.05 * rng.standard_normal((h, w, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def test_torch_perturb_pads_crops_scales_and_draws_the_key_from_its_generator() -> None:
    run = torch_perturb(random_generator(0))
    rgb = np.full((40, 50, 3), 128, np.uint8)  # not a multiple of the size multiple
    rng = np.random.default_rng
    weak, strong = run(rgb, 0.2, rng(0)), run(rgb, 1.0, rng(0))
    assert weak.shape == rgb.shape and weak.dtype == np.uint8
    assert np.array_equal(run(rgb, 0.0, rng(0)), rgb)
    assert np.array_equal(run(rgb, 1.0, rng(0)), strong)  # the same key: the same output
    assert not np.array_equal(run(rgb, 1.0, rng(1)), strong)  # another key: another output
    d_weak = np.abs(weak.astype(int) - 128).mean()
    assert 0 < d_weak < np.abs(strong.astype(int) - 128).mean()


def test_a_grid_offset_starts_the_cells_that_many_pixels_before_the_image() -> None:
    """Offset o on an image is offset 0 on the image with o reflected pixels above and left."""
    model = random_generator(1)
    rgb = painting(37, 45)
    for o in (2, 5):
        shifted = torch_perturb(model, o)(rgb, 1.0, np.random.default_rng(7))
        padded = np.pad(rgb, ((o, 0), (o, 0), (0, 0)), mode="reflect")
        aligned = torch_perturb(model)(padded, 1.0, np.random.default_rng(7))[o:, o:]
        assert shifted.shape == rgb.shape and np.array_equal(shifted, aligned)
    assert not np.array_equal(
        torch_perturb(model, 2)(rgb, 1.0, np.random.default_rng(7)),
        torch_perturb(model)(rgb, 1.0, np.random.default_rng(7)),
    )


def test_load_images_keep_alpha_and_the_jpeg_for_its_size(tmp_path) -> None:
    for i in range(6):
        Image.fromarray(painting(500, 300, i)).save(tmp_path / f"{i}.jpg", quality=95)
    rgba = np.dstack([painting(100, 90), np.full((100, 90), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "9.png")
    imgs = load_images(tmp_path, every=5, side=384)
    assert [im.sample.name for im in imgs] == ["0.jpg", "5.jpg"]
    for im in imgs:
        h, w = im.sample.rgb.shape[:2]
        assert max(h, w) <= 384 and h % 8 == 0 == w % 8 and im.sample.alpha is None
        with Image.open(io.BytesIO(im.jpeg)) as j:  # re-encoded at the downscaled size
            assert j.format == "JPEG" and j.size[1] == 384
    sprite = load_images(tmp_path, every=1, side=384)[-1]
    assert sprite.jpeg is None and sprite.sample.alpha is not None
    assert sprite.sample.rgb.shape[:2] == sprite.sample.alpha.shape == (96, 88)


class TinyEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3, 4, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_replay_removes_a_deterministic_perturbation_but_not_a_keyed_one() -> None:
    images = [ValImage(Sample(str(i), painting(seed=i), None), None) for i in range(3)]
    pattern = np.random.default_rng(7).choice([-1.0, 1.0], (96, 112, 3))

    def fixed(rgb: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
        return np.clip(
            np.round(rgb + 8 * s * pattern[: rgb.shape[0], : rgb.shape[1]]), 0, 255
        ).astype(np.uint8)

    def keyed(rgb: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
        sign = rng.choice([-1.0, 1.0], rgb.shape)
        return np.clip(np.round(rgb + 8 * s * sign), 0, 255).astype(np.uint8)

    with torch.no_grad():
        det = score_model(fixed, images, 70.0, TinyEncoder())
        key = score_model(keyed, images, 70.0, TinyEncoder())
    for r in (det, key):
        assert abs(r["ssimulacra2"] - 70) < 3 and r["jpeg_size"] is None
    for t in ("jpeg85", "resize-jpeg"):
        assert det["G_replay"][t] < 0.2 * det["G"][t]
        assert key["G_replay"][t] > 0.8 * key["G"][t]


def test_compare_names_a_missing_surrogate_file_and_exits_2(tmp_path, capsys) -> None:
    missing = tmp_path / "enc.pt"
    with pytest.raises(SystemExit) as e:
        main(["m.pt", "--surrogate", str(missing), "--shared", str(tmp_path)])
    assert e.value.code == 2 and f"surrogate file not found: {missing}" in capsys.readouterr().err
