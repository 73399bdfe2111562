"""bench/projection.py: cells in the generator's own layout, and the span removed exactly."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perturb.training.generator import GeneratorConfig, KeyedProtector

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("projection", ROOT / "bench" / "projection.py")
projection = importlib.util.module_from_spec(spec)
sys.modules["projection"] = projection
spec.loader.exec_module(projection)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), s=st.sampled_from([2, 4, 8]),
       seed=st.integers(0, 999))
def test_cells_round_trip_any_size(h: int, w: int, s: int, seed: int) -> None:
    img = np.random.default_rng(seed).random((h, w, 3))
    cells, padded = projection.to_cells(img, s)
    assert cells.shape == (padded[0] * padded[1] // s**2, 3 * s * s)
    np.testing.assert_array_equal(projection.from_cells(cells, s, padded, img.shape), img)


def test_a_cell_is_laid_out_as_the_generator_lays_out_its_patch() -> None:
    """Pre-tanh, each cell of the model's change is exactly W times that cell's hidden features."""
    torch.manual_seed(0)
    model = KeyedProtector(GeneratorConfig(scale=4, hidden=5, key_channels=2)).eval()
    hidden = torch.randn(1, 5, 3, 4)
    with torch.no_grad():
        patch = torch.nn.functional.pixel_shuffle(model.out(hidden), 4)[0].permute(1, 2, 0)
    cells, _ = projection.to_cells(patch.numpy().astype(np.float64), 4)
    w = model.out.weight.detach().reshape(48, 5).numpy().astype(np.float64)
    per_cell = hidden[0].permute(1, 2, 0).reshape(-1, 5).numpy() @ w.T
    np.testing.assert_allclose(cells, per_cell, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 20), seed=st.integers(0, 999))
def test_the_span_attack_removes_a_change_in_the_span_and_nothing_else(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(48, k))
    proj = projection.projector(w)
    image_cells = rng.random((12, 48))
    image_cells -= image_cells @ proj  # an image with nothing in the span
    change = rng.normal(size=(12, k)) @ w.T
    padded = (12, 16)
    x = projection.from_cells(image_cells, 4, padded, (12, 16, 3))
    xp = projection.from_cells(image_cells + change, 4, padded, (12, 16, 3))
    np.testing.assert_allclose(projection.remove_span(xp, proj, 4), x, atol=1e-9)
    # the high-pass variant leaves a flat image alone
    flat = np.full((12, 16, 3), 0.4)
    np.testing.assert_allclose(projection.remove_span(flat, proj, 4, blurred=flat), flat)
    assert projection.span_share(xp - x, proj, 4) > 1 - 1e-9


def test_training_removes_the_span_as_the_bench_does() -> None:
    """train.py's differentiable attack is bench/projection.py's, given the same blur."""
    from perturb.training.train import SPAN_BLUR_SIGMA, gaussian_blur, remove_span_detail

    torch.manual_seed(3)
    w = torch.randn(48, 6, 1, 1)
    x = torch.rand(2, 3, 16, 24)
    ours = remove_span_detail(x, w, 4)
    proj = projection.projector(w.flatten(1).numpy().astype(np.float64))
    for i in range(2):
        img = x[i].permute(1, 2, 0).numpy().astype(np.float64)
        blurred = gaussian_blur(x[i : i + 1], SPAN_BLUR_SIGMA)[0].permute(1, 2, 0).numpy()
        bench = projection.remove_span(img, proj, 4, blurred.astype(np.float64))
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), bench, atol=1e-5)
    # a flat image has no fine detail, so nothing is removed
    flat = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(remove_span_detail(flat, w, 4), flat)
