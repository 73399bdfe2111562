"""Palettes and low bit depths: never marked protected unless the pixels changed as the model
intended (docs/engine.md, "Palettes and low bit depths")."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from perturb import UnsupportedImage, inspect_marker, protect
from perturb.engine import Carried
from tests.engine import samples


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.int16)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, (6, 5, 3)), arrays(np.int16, (6, 5, 3), elements=st.integers(-6, 6)))
def test_carried_measure(before: np.ndarray, delta: np.ndarray) -> None:
    intended = np.clip(before.astype(np.int16) + delta, 0, 255).astype(np.uint8)
    exact = Carried.measure(before, intended, intended, None)
    assert exact.error_share == 0 and exact.changed_share == 1 and exact.enough
    if np.array_equal(intended, before):
        return
    nothing = Carried.measure(before, intended, before, None)
    assert nothing.changed_share == 0 and nothing.error_share == pytest.approx(1)
    assert not nothing.enough
    hidden = Carried.measure(before, intended, before, np.zeros(before.shape[:2], np.uint8))
    assert hidden.intended_pixels == 0  # transparent pixels do not count


def test_a_palette_that_can_hold_the_perturbation_is_kept_exactly(tiny_model: str) -> None:
    base = np.array([[40, 80, 120], [200, 60, 30], [90, 180, 90]], np.int16)
    # each colour with the tiny model's ±4 variants (the key picks the sign per channel):
    # snapping loses nothing
    signs = np.array(np.meshgrid([-4, 4], [-4, 4], [-4, 4])).reshape(3, -1).T
    entries = np.concatenate([base] + [base + s for s in signs]).astype(np.uint8)
    index = np.random.default_rng(1).integers(0, 3, (24, 32)).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(entries.tobytes())
    data = samples.encode(image, "PNG")
    out = protect(data, model=tiny_model)
    after = Image.open(io.BytesIO(out.data))
    assert after.mode == "P" and after.getpalette()[: entries.size] == entries.ravel().tolist()
    assert not out.report.notes
    assert np.any(decoded(out.data) != decoded(data), axis=2).mean() > 0.9


@pytest.mark.parametrize("colours", [2, 4, 16])
def test_a_small_palette_png_is_converted_and_says_so(tiny_model: str, colours: int) -> None:
    image = Image.fromarray(samples.artwork(48, 32, colours)).quantize(colours)
    data = samples.encode(image, "PNG")
    out = protect(data, model=tiny_model)
    assert Image.open(io.BytesIO(out.data)).mode == "RGB"
    assert any("palette" in note and "RGB" in note for note in out.report.notes)
    moved = np.abs(decoded(out.data) - decoded(data))[..., :3]
    assert (moved.max(axis=2) > 0).mean() > 0.4 and moved.max() <= 4
    assert inspect_marker(out.data) is not None


def test_a_pixel_art_gif_gets_a_palette_that_holds_the_perturbation(tiny_model: str) -> None:
    art = Image.fromarray(samples.artwork(32, 24, 3)).quantize(4)
    data = samples.encode(art.resize((96, 72), Image.Resampling.NEAREST), "GIF")
    out = protect(data, model=tiny_model)
    assert Image.open(io.BytesIO(out.data)).format == "GIF"
    assert np.any(decoded(out.data) != decoded(data), axis=2).mean() > 0.4
    assert any("GIF's palette was rebuilt" in note for note in out.report.notes)


def test_nothing_visible_to_change_is_refused(tiny_model: str) -> None:
    transparent = np.zeros((16, 16, 4), np.uint8)
    data = samples.encode(Image.fromarray(transparent, "RGBA"), "PNG")
    with pytest.raises(UnsupportedImage, match="no visible pixel"):
        protect(data, model=tiny_model)
