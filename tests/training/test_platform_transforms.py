"""Platform transforms are what EVALUATION.md says: JPEG quality and subsampling read back from the
served file, the resize size, the noise level, determinism, and typed errors for bad input."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, JpegImagePlugin

from perturb.training import platform_transforms as pt


def smooth_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], axis=2) * 200 + 20
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def libjpeg_luma_dc(quality: int) -> int:
    """First entry of the standard (Annex K) luminance table scaled as libjpeg does."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return max(1, min(255, (16 * scale + 50) // 100))


@pytest.mark.parametrize(
    ("name", "quality"), [("jpeg85", 85), ("resize-jpeg", 80), ("noise-jpeg", 75)]
)
def test_served_jpeg_quality_and_420_subsampling(name: str, quality: int) -> None:
    data = pt.served(name, smooth_image())
    assert data is not None
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0
        assert im.quantization[0][0] == libjpeg_luma_dc(quality)


def test_none_is_identity_and_serves_the_upload_itself() -> None:
    img = smooth_image()
    assert pt.served("none", img) is None
    assert pt.apply("none", img) is img


def test_resize_jpeg_downscales_by_three_quarters() -> None:
    out = pt.apply("resize-jpeg", smooth_image(h=300, w=400))
    assert out.shape == (225, 300, 3)
    assert pt.resized_size(401, 33) == (301, 25)


def test_resize_is_lanczos_antialiased() -> None:
    # A 1-px checkerboard is above the new Nyquist limit: an antialiased filter averages it to grey;
    # point sampling would keep full-contrast black and white pixels.
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    img = np.repeat(board[:, :, None], 3, axis=2)
    out = pt.downscale(img)
    assert out[8:-8, 8:-8].std() < 40
    ref = np.asarray(Image.fromarray(img).resize((48, 48), Image.LANCZOS))
    np.testing.assert_array_equal(out, ref)


def test_noise_jpeg_noise_level_and_fixed_seed() -> None:
    grey = np.full((128, 128, 3), 128, np.uint8)
    noisy = pt.gaussian_noise(grey)
    sigma = (noisy.astype(float) - 128).std() / 255
    assert 0.018 < sigma < 0.022
    np.testing.assert_array_equal(noisy, pt.gaussian_noise(grey))
    np.testing.assert_array_equal(pt.apply("noise-jpeg", grey), pt.apply("noise-jpeg", grey))


def test_noise_is_clipped() -> None:
    white = np.full((64, 64, 3), 255, np.uint8)
    noisy = pt.gaussian_noise(white)
    assert noisy.max() == 255 and noisy.min() < 255  # clipped above, noise below


def test_jpeg85_changes_pixels_a_little() -> None:
    img = smooth_image()
    out = pt.apply("jpeg85", img)
    diff = np.abs(out.astype(int) - img.astype(int))
    assert out.shape == img.shape and 0 < diff.mean() < 10


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_bad_images_raise_typed_error(bad: np.ndarray) -> None:
    with pytest.raises(pt.TransformError, match="uint8"):
        pt.apply("jpeg85", bad)


def test_unknown_transform_raises_with_known_names() -> None:
    with pytest.raises(pt.TransformError, match="jpeg85"):
        pt.apply("webp90", smooth_image())


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), name=st.sampled_from(pt.TRANSFORMS))
def test_any_size_gives_rgb_uint8_of_the_expected_size(h: int, w: int, name: str) -> None:
    img = smooth_image(h, w)
    out = pt.apply(name, img)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    expect = pt.resized_size(w, h) if name == "resize-jpeg" else (w, h)
    assert (out.shape[1], out.shape[0]) == expect


def test_resize_jpeg_at_a_factor_is_resize_jpeg_at_that_factor() -> None:
    """`resize-jpeg@0.75` is EVALUATION.md's `resize-jpeg`; another factor scales to its size."""
    img = smooth_image(60, 80)
    np.testing.assert_array_equal(pt.apply("resize-jpeg@0.75", img), pt.apply("resize-jpeg", img))
    out = pt.apply("resize-jpeg@0.6", img)
    assert (out.shape[1], out.shape[0]) == pt.resized_size(80, 60, 0.6) == (48, 36)
    with Image.open(io.BytesIO(pt.served("resize-jpeg@0.6", img))) as im:
        assert im.format == "JPEG" and im.quantization[0][0] == libjpeg_luma_dc(80)


@pytest.mark.parametrize("bad", ["resize-jpeg@", "resize-jpeg@0", "resize-jpeg@1.5",
                                 "resize-jpeg@x", "jpeg85@0.5"])  # fmt: skip
def test_a_bad_resize_factor_raises_with_the_form(bad: str) -> None:
    with pytest.raises(pt.TransformError, match="resize-jpeg@F"):
        pt.apply(bad, smooth_image())
