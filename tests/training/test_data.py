"""Data loading: transparency over grey 128 (EVALUATION.md), crops, errors that say where."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb.training.data import (
    CropSampler,
    DataError,
    composite,
    list_images,
    load_rgb,
    to_rgb,
)


def test_transparent_pixels_become_grey_128() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    rgb = to_rgb(img)
    assert rgb.getpixel((1, 1)) == (128, 128, 128)
    assert rgb.getpixel((0, 0)) == (255, 0, 0)


def test_half_alpha_blends() -> None:
    r, g, b = to_rgb(Image.new("LA", (2, 2), (0, 128))).getpixel((0, 0))
    assert abs(r - 64) <= 1 and r == g == b


def test_load_rgb_downscales_and_crops_to_multiple(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.new("RGB", (300, 130), (10, 20, 30)).save(p)
    x = load_rgb(p, max_side=150, multiple=32)
    assert x.shape == (3, 64, 128)
    assert torch.allclose(x[:, 0, 0], torch.tensor([10, 20, 30]) / 255.0)


def test_missing_and_empty_folders_raise_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="artworks"):
        list_images(tmp_path, "val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path / "empty")


@settings(max_examples=15, deadline=None)
@given(w=st.integers(8, 80), h=st.integers(8, 80), size=st.sampled_from([16, 32, 64]))
def test_crops_always_have_the_requested_size(tmp_path_factory, w: int, h: int, size: int) -> None:
    p = tmp_path_factory.mktemp("img") / "x.png"
    Image.new("RGB", (w, h), (200, 100, 0)).save(p)
    batch = CropSampler([p], seed=w * h).batch(3, size)
    assert batch.shape == (3, 4, size, size)  # colour + alpha
    assert float(batch.min()) >= 0 and float(batch.max()) <= 1
    assert torch.allclose(batch[:, 3], torch.ones_like(batch[:, 3]), atol=1e-5)  # opaque


def test_crops_keep_colour_under_alpha_and_composite_like_the_benchmark(tmp_path: Path) -> None:
    p = tmp_path / "sprite.png"
    img = Image.new("RGBA", (40, 40), (250, 10, 10, 0))  # colour stored under transparency
    img.paste((20, 200, 20, 255), (0, 0, 40, 20))
    img.save(p)
    batch = CropSampler([p], seed=1).batch(4, 40)
    assert batch[:, 0].max() > 0.9  # the hidden red is kept, as the engine sees it
    shown = composite(batch)
    assert shown.shape == (4, 3, 40, 40)
    hidden = batch[:, 3:] == 0
    grey = torch.full_like(shown, 128 / 255)
    assert torch.allclose(shown[hidden.expand_as(shown)], grey[hidden.expand_as(shown)])
