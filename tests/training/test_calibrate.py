"""Preset calibration: solving the median visibility curve for each target score."""

import math

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perturb.training.calibrate import GRID, calibrate, interpolate, pad_to, solve
from perturb.training.generator import GeneratorConfig, PatternProtector


@settings(max_examples=50, deadline=None)
@given(a=st.floats(85, 99), slope=st.floats(5, 40), target=st.floats(50, 85))
def test_solve_inverts_a_log_linear_curve(a: float, slope: float, target: float) -> None:
    # score(s) = a − slope·ln(s): solving for the target must give exp((a − target) / slope)
    grid = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    scores = np.array([[a - slope * math.log(s) for s in grid]] * 3)
    expected = math.exp((a - target) / slope)
    assume(grid[0] <= expected <= grid[-1])
    assert math.isclose(solve(scores, grid, target), expected, rel_tol=1e-6)


def test_solve_uses_the_median_over_images() -> None:
    grid = (1.0, 2.0)
    scores = np.array([[90.0, 50.0], [80.0, 60.0], [0.0, -100.0]])  # median curve 80 → 50
    assert math.isclose(solve(scores, grid, 65.0), math.exp(0.5 * math.log(2.0)), rel_tol=1e-9)


def test_interpolate_hits_grid_points() -> None:
    scores = np.linspace(95.0, 10.0, len(GRID))[None]
    for s, v in zip(GRID, scores[0], strict=True):
        assert math.isclose(interpolate(scores, GRID, s)[0], v)


def test_pad_to_reflects_up_to_the_multiple() -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)
    y = pad_to(x, 4)
    assert y.shape == (2, 4, 8)
    assert torch.equal(y[:, :3, :5], x)


def test_calibrated_presets_are_ordered() -> None:
    torch.manual_seed(0)
    model = PatternProtector(GeneratorConfig(patterns=2, hidden=4)).eval()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([xx, yy, 0.5 + 0.3 * torch.sin(20 * xx)]).clamp(0, 1)
    presets, scores = calibrate(model, [img])
    assert scores.shape == (1, len(GRID))
    assert np.all(np.diff(scores[0]) < 0)  # stronger is more visible
    assert 0 < presets["low"] < presets["default"] < presets["high"]
