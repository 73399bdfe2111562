"""Preset calibration: solving the median visibility curve, and the coverage rule's exponent."""

import math
from pathlib import Path

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb.training.calibrate import (
    GRID,
    Sample,
    calibrate,
    fit_exponent,
    interpolate,
    load_sample,
    solve,
)


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
    # at t = ln s / ln 2 the scores are 90 − 40t, 80 − 20t, −100t: the median is the smaller of
    # the first two, which reaches 65 at t = 0.625 (on image 1's line, not image 2's at 0.75)
    scores = np.array([[90.0, 50.0], [80.0, 60.0], [0.0, -100.0]])
    assert math.isclose(solve(scores, grid, 65.0), math.exp(0.625 * math.log(2.0)), rel_tol=1e-9)


def test_solve_applies_per_image_factors() -> None:
    # one image, score = 100 − 10·ln(s); a factor of 2 reaches the target at half the strength
    grid = (0.1, 1.0, 10.0)
    scores = np.array([[100 - 10 * math.log(s) for s in grid]])
    plain = solve(scores, grid, 95.0)
    assert math.isclose(solve(scores, grid, 95.0, [2.0]), plain / 2, rel_tol=1e-6)


def test_interpolate_hits_grid_points() -> None:
    scores = np.linspace(95.0, 10.0, len(GRID))[None]
    for s, v in zip(GRID, scores[0], strict=True):
        assert math.isclose(interpolate(scores, GRID, s)[0], v)


def test_fit_exponent_equalises_sprites_and_opaque_images() -> None:
    # score = 100 − 20·ln(s·k) with k = coverage: a sprite of coverage c needs 1/c times the
    # strength for the same score, i.e. exponent 1 (within the cap of 2 for c = 0.5).
    grid = tuple(np.geomspace(0.05, 20, 30))
    cov = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    scores = np.array([[100 - 20 * math.log(s * c) for s in grid] for c in cov])
    assert fit_exponent(scores, cov, grid, target=71.0) == 1.0
    assert fit_exponent(scores[:3], cov[:3], grid) == 0.0  # nothing transparent: no rule


def test_load_sample_keeps_colour_under_transparency(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :4, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "s.png")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "o.png")
    s, o = load_sample(tmp_path / "s.png"), load_sample(tmp_path / "o.png")
    assert s.coverage == 0.5 and o.coverage == 1.0 and o.alpha is None
    assert (s.rgb[..., 0] == 200).all()  # colour kept where alpha is 0
    comp = s.composite(s.rgb)
    assert (comp[:, :4, 0] == 200).all() and (comp[:, 4:] == 128).all()


def _noise_perturb(rgb: np.ndarray, strength: float) -> np.ndarray:
    u = np.random.default_rng(0).uniform(-1, 1, rgb.shape)
    return np.clip(np.round(rgb + 6 * strength * u), 0, 255).astype(np.uint8)


def test_calibrated_presets_are_ordered_and_sprites_get_more_strength() -> None:
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    img = (np.stack([xx, yy, 0.5 + 0.3 * np.sin(20 * xx)], 2) * 255).astype(np.uint8)
    alpha = np.zeros((64, 64), np.uint8)
    alpha[16:48, 16:48] = 255  # a 25 % sprite
    flipped = img[::-1].copy()
    samples = [Sample("opaque", img, None), Sample("sprite", img, alpha),
               Sample("opaque2", flipped, None), Sample("sprite2", flipped, alpha)]
    cal = calibrate(_noise_perturb, samples)
    assert cal.scores.shape == (4, len(GRID))
    assert np.all(np.diff(cal.scores, axis=1) < 0)  # stronger is more visible
    assert 0 < cal.presets["low"] < cal.presets["default"] < cal.presets["high"]
    assert cal.exponent > 0 and cal.factors[1] > 1.0 == cal.factors[0]
