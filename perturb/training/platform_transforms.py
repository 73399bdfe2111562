"""The platform transforms of EVALUATION.md: what a scraper actually downloads after an art site
re-encodes an upload. Protection is scored after each of them.

| name          | transform                                                               |
| ------------- | ----------------------------------------------------------------------- |
| `none`        | identity                                                                |
| `jpeg85`      | JPEG quality 85, 4:2:0 (Pillow defaults otherwise)                      |
| `resize-jpeg` | downscale by 0.75 (Lanczos, antialiased), then JPEG quality 80          |
| `noise-jpeg`  | add Gaussian noise σ = 0.02, clip, then JPEG quality 75                 |

Outside EVALUATION.md's four, `resize-jpeg@F` downscales by another factor `F` before the same
JPEG 80 (`bench/resize_sweep.py`): sites resize to their own widths, and how the model's 8-px cells
land on the output pixels depends on the factor (at 0.75 every cell edge falls on a pixel edge).

They work on 8-bit RGB arrays (H×W×3 uint8) because what a site serves is an 8-bit file. The noise
of `noise-jpeg` comes from a fixed seed and depends only on the image size, so `x`, `x'` and the
noise baseline of one image all receive the same noise: the latent shift then measures the
perturbation, not a difference in purification noise.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

TRANSFORMS: tuple[str, ...] = ("none", "jpeg85", "resize-jpeg", "noise-jpeg")
RESIZE_FACTOR = 0.75
NOISE_SIGMA = 0.02
NOISE_SEED = 20251122


class TransformError(ValueError):
    """Unknown transform name or an image that is not H×W×3 uint8."""


def _check(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise TransformError(
            f"platform transforms take H×W×3 uint8 RGB, got {img.dtype} {img.shape}"
        )


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """The JPEG a site serves: `quality`, 4:2:0 chroma subsampling, Pillow defaults otherwise."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy()


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG (see `encode_jpeg`) and decode back."""
    return decode(encode_jpeg(img, quality))


def resized_size(width: int, height: int, factor: float = RESIZE_FACTOR) -> tuple[int, int]:
    """The size after downscaling by `factor` (rounded, at least 1 px)."""
    return max(1, round(width * factor)), max(1, round(height * factor))


def downscale(img: np.ndarray, factor: float = RESIZE_FACTOR) -> np.ndarray:
    """Lanczos downscale; Pillow's resize filters over the full support, so it is antialiased."""
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize(resized_size(w, h, factor), Image.LANCZOS))


def gaussian_noise(
    img: np.ndarray, sigma: float = NOISE_SIGMA, seed: int = NOISE_SEED
) -> np.ndarray:
    """Add N(0, σ²) noise in [0, 1] units (fixed seed), clip, and round back to 8 bits."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    out = np.clip(img / 255.0 + noise, 0.0, 1.0)
    return np.round(out * 255.0).astype(np.uint8)


# name → (pixel operation before encoding, JPEG quality or None for no re-encoding)
_STEPS: dict[str, tuple[Callable[[np.ndarray], np.ndarray] | None, int | None]] = {
    "none": (None, None),
    "jpeg85": (None, 85),
    "resize-jpeg": (downscale, 80),
    "noise-jpeg": (gaussian_noise, 75),
}


def _steps(name: str) -> tuple[Callable[[np.ndarray], np.ndarray] | None, int | None]:
    """EVALUATION.md's four by name, or `resize-jpeg@F` (the bench's other downscale factors)."""
    if name in _STEPS:
        return _STEPS[name]
    base, _, factor = name.partition("@")
    try:
        f = float(factor) if base == "resize-jpeg" else None
    except ValueError:
        f = None
    if f is None or not 0 < f <= 1:
        raise TransformError(
            f"unknown platform transform {name!r}; known: {', '.join(TRANSFORMS)}"
            " and resize-jpeg@F with 0 < F ≤ 1"
        )
    return (lambda img: downscale(img, f)), _STEPS["resize-jpeg"][1]


def served(name: str, img: np.ndarray) -> bytes | None:
    """The file a scraper downloads after transform `name` (None for `none`: the upload itself)."""
    op, quality = _steps(name)
    _check(img)
    if quality is None:
        return None
    return encode_jpeg(op(img) if op else img, quality)


def apply(name: str, img: np.ndarray) -> np.ndarray:
    """Apply the platform transform `name` to an H×W×3 uint8 image (what the scraper decodes)."""
    data = served(name, img)
    return img if data is None else decode(data)
