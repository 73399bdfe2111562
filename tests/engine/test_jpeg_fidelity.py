"""JPEG: quality (tables), chroma subsampling and progressive mode survive protection."""

from __future__ import annotations

import io

import pytest
from PIL import Image, JpegImagePlugin

from perturb import protect
from tests.engine import samples


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("quality", [60, 95])
def test_encoding_parameters_are_kept(tiny_model, subsampling, progressive, quality) -> None:
    data = samples.encode(Image.fromarray(samples.artwork(64, 48)), "JPEG", quality=quality,
                          subsampling=subsampling, progressive=progressive)
    out = protect(data, model=tiny_model)
    before, after = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(out.data))
    assert JpegImagePlugin.get_sampling(after) == subsampling
    assert bool(after.info.get("progressive")) is progressive
    assert after.quantization == before.quantization
    assert out.report.fidelity["quality"] == quality
    assert out.report.fidelity["subsampling"] == {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}[subsampling]


def test_greyscale_jpeg(tiny_model) -> None:
    data = samples.encode(Image.fromarray(samples.artwork(40, 30)).convert("L"), "JPEG",
                          quality=90)
    after = Image.open(io.BytesIO(protect(data, model=tiny_model).data))
    assert after.mode == "L"


def test_mpo_keeps_only_the_primary_image(tiny_model) -> None:
    first, second = Image.new("RGB", (32, 24), (200, 10, 10)), Image.new("RGB", (32, 24))
    data = samples.encode(first, "MPO", save_all=True, append_images=[second])
    out = protect(data, model=tiny_model)
    after = Image.open(io.BytesIO(out.data))
    assert out.report.frames == 1 and after.format == "JPEG"
    assert after.getpixel((5, 5))[0] > 150  # the red primary image, not the black second one
