"""The issue's 6-format sample set round-trips with format, size, mode, alpha, metadata and frame
timing intact, visibly unchanged, and marked."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from perturb import inspect_marker, protect
from tests.engine import samples

SAMPLES = samples.sample_set()
# A 256-colour palette cannot hold the perturbation (see test_palettes.py): written as RGBA.
WRITTEN_MODE = {"palette.png": "RGBA"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.fixture(scope="module")
def protected(tiny_model: str) -> dict[str, bytes]:
    return {name: protect(data, model=tiny_model).data for name, data in SAMPLES.items()}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_format_size_mode_alpha_and_look_are_kept(name: str, protected: dict[str, bytes]) -> None:
    before = Image.open(io.BytesIO(SAMPLES[name]))
    after = Image.open(io.BytesIO(protected[name]))
    assert after.format == before.format
    assert after.size == before.size
    assert after.mode == WRITTEN_MODE.get(name, before.mode)
    assert getattr(after, "n_frames", 1) == getattr(before, "n_frames", 1)
    for (a, _), (b, _) in zip(
        samples.frames_of(SAMPLES[name]), samples.frames_of(protected[name]), strict=True
    ):
        assert np.array_equal(a[..., 3], b[..., 3]), "alpha must be copied exactly"
        visible = a[..., 3] > 0
        assert psnr(a[..., :3][visible], b[..., :3][visible]) > 30, "visibly changed"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_carries_the_marker_and_reservation(name, protected, tiny_model) -> None:
    marker = inspect_marker(protected[name])
    assert marker is not None
    assert marker.model_id == "tiny-test"
    assert marker.strength == 1.0
    assert marker.ai_reservation
    assert inspect_marker(SAMPLES[name]) is None


def test_jpeg_keeps_exif_orientation_icc_dpi_quality_and_subsampling(protected) -> None:
    before = Image.open(io.BytesIO(SAMPLES["jpeg_exif_icc.jpg"]))
    after = Image.open(io.BytesIO(protected["jpeg_exif_icc.jpg"]))
    assert after.getexif()[samples.ORIENTATION] == 6
    assert after.getexif()[0x010F] == "SfumatoCam"
    assert after.info["icc_profile"] == before.info["icc_profile"]
    assert after.info["dpi"] == pytest.approx((300, 300))
    assert JpegImagePlugin.get_sampling(after) == JpegImagePlugin.get_sampling(before) == 2
    assert after.quantization == before.quantization
    # orientation untouched means the stored pixels are not rotated
    assert after.size == before.size == (160, 120)


def test_jpeg_pixels_are_actually_perturbed(protected) -> None:
    before = np.asarray(Image.open(io.BytesIO(SAMPLES["jpeg_exif_icc.jpg"])), dtype=np.int16)
    after = np.asarray(Image.open(io.BytesIO(protected["jpeg_exif_icc.jpg"])), dtype=np.int16)
    assert np.abs(after - before).mean() > 0.5


def test_png_text_chunks_and_dpi_are_kept(protected) -> None:
    after = Image.open(io.BytesIO(protected["rgba.png"]))
    after.load()
    assert after.text["Author"] == "Ana Pintora"
    assert after.text["Description"] == "Retrato · óleo digital"
    assert after.text["Description"].lang == "es"
    assert after.info["dpi"] == pytest.approx((144, 144), abs=0.05)


def test_webp_stays_lossy_and_keeps_icc(protected) -> None:
    from perturb.containers import webp_is_lossless

    assert not webp_is_lossless(protected["lossy.webp"])
    after = Image.open(io.BytesIO(protected["lossy.webp"]))
    before = Image.open(io.BytesIO(SAMPLES["lossy.webp"]))
    assert after.info["icc_profile"] == before.info["icc_profile"]


def test_greyscale_stays_greyscale_and_is_perturbed(protected) -> None:
    before = np.asarray(Image.open(io.BytesIO(SAMPLES["grey.png"])), dtype=np.int16)
    after = Image.open(io.BytesIO(protected["grey.png"]))
    assert after.mode == "L"
    diff = np.abs(np.asarray(after, dtype=np.int16) - before)
    assert 0 < diff.max() <= 5


def test_palette_png_transparency_moves_into_the_alpha_channel(protected) -> None:
    before = Image.open(io.BytesIO(SAMPLES["palette.png"]))
    after = Image.open(io.BytesIO(protected["palette.png"]))
    assert before.info["transparency"] == 0 and "transparency" not in after.info
    assert np.array_equal(np.asarray(after)[..., 3] == 0, np.asarray(before) == 0)


def test_gif_keeps_frame_timing_loop_and_disposal(protected) -> None:
    before = samples.frames_of(SAMPLES["three_frames.gif"])
    after = samples.frames_of(protected["three_frames.gif"])
    assert [i["duration"] for _, i in after] == samples.GIF_DURATIONS
    assert [i["disposal"] for _, i in after] == [i["disposal"] for _, i in before]
    assert after[0][1]["loop"] == before[0][1]["loop"] == 0
