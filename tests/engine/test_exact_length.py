"""exact_length: exactly N bytes (re-encode smaller, pad inside the XMP packet) or a clear error."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb import CannotFitLength, inspect_marker, protect
from tests.engine import samples

FILES = {
    "JPEG": samples.jpeg_with_exif_and_icc(),
    "PNG": samples.rgba_png(),
    "WEBP": samples.webp_lossy(),
    "GIF": samples.gif_3_frames(),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(FILES)), extra=st.integers(0, 200_000))
def test_padding_reaches_the_exact_length(tiny_model: str, fmt: str, extra: int) -> None:
    # a fixed seed: with a fresh secret each protection compresses to a slightly different size
    natural = len(protect(FILES[fmt], model=tiny_model, seed=11).data)
    target = natural + extra
    if fmt == "WEBP" and target % 2:
        with pytest.raises(CannotFitLength, match="even"):
            protect(FILES[fmt], model=tiny_model, exact_length=target, seed=11)
        return
    out = protect(FILES[fmt], model=tiny_model, exact_length=target, seed=11).data
    assert len(out) == target
    image = Image.open(io.BytesIO(out))
    image.load()
    assert inspect_marker(out) is not None


def test_jpeg_is_reencoded_smaller_to_fit(tiny_model: str) -> None:
    natural = len(protect(FILES["JPEG"], model=tiny_model).data)
    target = int(natural * 0.8)
    out = protect(FILES["JPEG"], model=tiny_model, exact_length=target).data
    assert len(out) == target
    assert Image.open(io.BytesIO(out)).size == (160, 120)


def test_impossible_length(tiny_model: str) -> None:
    for data in FILES.values():
        with pytest.raises(CannotFitLength):
            protect(data, model=tiny_model, exact_length=100)
