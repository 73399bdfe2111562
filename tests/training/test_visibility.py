"""The PyTorch SSIMULACRA 2 port agrees with the `ssimulacra2` package and has useful gradients."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from ssimulacra2 import compute_ssimulacra2

from perturb.training.data import pil_to_tensor
from perturb.training.visibility import ssimulacra2


def scene(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.stack([0.5 + 0.3 * np.sin(5 * xx), 0.3 + 0.5 * yy, 0.5 + 0.2 * np.cos(7 * yy)], -1)
    img += 0.1 * np.sin(40 * xx + 10 * yy)[..., None] + 0.03 * rng.standard_normal((h, w, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def png(a: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    buf.seek(0)
    return buf


@pytest.mark.parametrize(("w", "h", "amp"), [(96, 96, 2), (128, 80, 3), (64, 64, 4), (160, 96, 1)])
def test_port_matches_the_package(w: int, h: int, amp: int) -> None:
    """Within a point where training uses it (scores ~50–95; far below, edge handling differs)."""
    ref = scene(w, h, amp)
    noise = np.random.default_rng(amp).integers(-amp, amp + 1, ref.shape)
    dist = np.clip(ref.astype(int) + noise, 0, 255).astype(np.uint8)
    expected = compute_ssimulacra2(png(ref), png(dist))
    got = ssimulacra2(pil_to_tensor(Image.fromarray(ref))[None],
                      pil_to_tensor(Image.fromarray(dist))[None]).item()
    assert 40 < expected < 97
    assert abs(got - expected) < 1.0, (got, expected)


def test_identical_images_score_about_100_and_more_noise_scores_lower() -> None:
    x = pil_to_tensor(Image.fromarray(scene(64, 64, 0)))[None]
    # not exactly 100: the epsilon that keeps the L4 norm's gradient finite at 0
    assert 99.5 <= ssimulacra2(x, x).item() <= 100.0
    g = torch.Generator().manual_seed(0)
    n = torch.rand(x.shape, generator=g) - 0.5
    scores = [ssimulacra2(x, (x + a * n).clamp(0, 1)).item() for a in (0.02, 0.05, 0.1)]
    assert scores[0] > scores[1] > scores[2]


def test_gradient_is_finite_and_points_back_to_the_reference() -> None:
    x = pil_to_tensor(Image.fromarray(scene(64, 64, 1)))[None]
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    y.requires_grad_(True)
    s = ssimulacra2(x, y).sum()
    (grad,) = torch.autograd.grad(s, y)
    assert torch.isfinite(grad).all()
    with torch.no_grad():
        assert ssimulacra2(x, y + 1e-3 * grad / grad.abs().max()).item() > s.item()
