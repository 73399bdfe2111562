"""APNG and animated WebP are protected frame by frame with timing, loop and disposal kept."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from perturb import inspect_marker, protect
from tests.engine import samples

DURATIONS = [70, 140, 210]


def frames(width: int = 48, height: int = 36) -> list[Image.Image]:
    out = []
    for i in range(3):
        rgba = np.dstack([np.roll(samples.artwork(width, height, 9), 5 * i, axis=0),
                          samples.alpha_ramp(width, height)])
        out.append(Image.fromarray(rgba, "RGBA"))
    return out


def apng() -> bytes:
    f = frames()
    return samples.encode(f[0], "PNG", save_all=True, append_images=f[1:], duration=DURATIONS,
                          loop=4, disposal=[0, 1, 2], blend=[0, 1, 0])


def animated_webp(lossless: bool) -> bytes:
    f = frames()
    return samples.encode(f[0], "WEBP", save_all=True, append_images=f[1:], duration=DURATIONS,
                          loop=2, lossless=lossless, quality=90)


@pytest.mark.parametrize("name", ["apng", "webp-lossless", "webp-lossy"])
def test_animation_round_trip(tiny_model: str, name: str) -> None:
    data = {"apng": apng, "webp-lossless": lambda: animated_webp(True),
            "webp-lossy": lambda: animated_webp(False)}[name]()
    out = protect(data, model=tiny_model)
    assert out.report.frames == 3
    before, after = samples.frames_of(data), samples.frames_of(out.data)
    assert len(after) == 3
    assert [int(i["duration"]) for _, i in after] == DURATIONS
    assert after[0][1]["loop"] == before[0][1]["loop"]
    if name == "apng":
        assert [i["disposal"] for _, i in after] == [i["disposal"] for _, i in before]
    for (a, _), (b, _) in zip(before, after, strict=True):
        assert np.array_equal(a[..., 3], b[..., 3])
        visible = a[..., 3] > 0
        d = np.abs(a[..., :3].astype(int) - b[..., :3].astype(int))[visible]
        assert d.mean() > 0.5  # perturbed
        assert np.percentile(d, 99) <= (30 if name == "webp-lossy" else 4)
    assert inspect_marker(out.data) is not None

