"""Sample images generated in the tests (no files from ../shared): artwork-like pixels and the
issue's 6-format sample set, each with the metadata an artist's file typically carries."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

ORIENTATION = 0x0112


def artwork(width: int, height: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Smooth gradients, strokes and texture: closer to a painting than noise (uint8 H×W×C)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((height, width, channels), dtype=np.float32)
    for c in range(channels):
        fx, fy, phase = rng.uniform(0.005, 0.05), rng.uniform(0.005, 0.05), rng.uniform(0, 6)
        out[..., c] = 128 + 90 * np.sin(x * fx + y * fy + phase)
    out += rng.normal(0, 6, out.shape).astype(np.float32)
    for _ in range(3):  # a few hard-edged shapes
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, max(4, width / 4))
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        out[mask] = rng.uniform(0, 255, channels)
    return np.clip(out, 0, 255).astype(np.uint8)


@functools.cache
def srgb_icc() -> bytes:
    """An sRGB profile (cached: the profile embeds its creation time)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def alpha_ramp(width: int, height: int) -> np.ndarray:
    """Alpha with every kind of value: a gradient, a fully transparent and a fully opaque block."""
    alpha = np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1)).astype(np.uint8)
    alpha[: height // 4, : width // 4] = 0
    alpha[-height // 4 :, -width // 4 :] = 255
    return alpha


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def jpeg_with_exif_and_icc(width: int = 160, height: int = 120) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotate 90° CW on display: the stored pixels must stay as they are
    exif[0x010F] = "SfumatoCam"
    return encode(
        Image.fromarray(artwork(width, height, 1)), "JPEG", quality=88, subsampling=2,
        exif=exif.tobytes(), icc_profile=srgb_icc(), dpi=(300, 300),
    )


def rgba_png(width: int = 96, height: int = 80) -> bytes:
    rgba = np.dstack([artwork(width, height, 2), alpha_ramp(width, height)])
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Ana Pintora")
    info.add_itxt("Description", "Retrato · óleo digital", lang="es")
    return encode(Image.fromarray(rgba, "RGBA"), "PNG", pnginfo=info, dpi=(144, 144))


def webp_lossy(width: int = 120, height: int = 90) -> bytes:
    return encode(Image.fromarray(artwork(width, height, 3)), "WEBP", quality=85,
                  icc_profile=srgb_icc())


def webp_lossless_rgba(width: int = 64, height: int = 48) -> bytes:
    rgba = np.dstack([artwork(width, height, 4), alpha_ramp(width, height)])
    return encode(Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True)


def grey_png(width: int = 90, height: int = 70) -> bytes:
    return encode(Image.fromarray(artwork(width, height, 5, channels=1)[..., 0], "L"), "PNG")


def palette_png(width: int = 80, height: int = 64, colours: int = 256) -> bytes:
    image = Image.fromarray(artwork(width, height, 6)).quantize(colours, dither=Image.Dither.NONE)
    index = np.asarray(image).copy()
    index[:8, :8] = 0  # entry 0 is transparent
    out = Image.fromarray(index, "P")
    out.putpalette(image.getpalette())
    return encode(out, "PNG", transparency=0)


GIF_DURATIONS = [80, 120, 200]
GIF_DISPOSALS = [1, 2, 1]


def gif_3_frames(width: int = 64, height: int = 48) -> bytes:
    frames = []
    base = artwork(width, height, 7)
    for i in range(3):
        rgba = np.dstack([np.roll(base, 6 * i, axis=1), np.full((height, width), 255, np.uint8)])
        rgba[:6, :6, 3] = 0
        frames.append(Image.fromarray(rgba, "RGBA"))
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:],
                  duration=GIF_DURATIONS, loop=0, disposal=GIF_DISPOSALS)


def sample_set() -> dict[str, bytes]:
    """The issue's 6-format sample set."""
    return {
        "jpeg_exif_icc.jpg": jpeg_with_exif_and_icc(),
        "rgba.png": rgba_png(),
        "lossy.webp": webp_lossy(),
        "grey.png": grey_png(),
        "palette.png": palette_png(),
        "three_frames.gif": gif_3_frames(),
    }


def frames_of(data: bytes) -> list[tuple[np.ndarray, dict]]:
    """Composited RGBA frames with their timing info."""
    im = Image.open(io.BytesIO(data))
    out = []
    for i in range(getattr(im, "n_frames", 1)):
        im.seek(i)
        im.load()  # some plugins (WebP) fill in the frame's info when it is decoded
        info = {
            "duration": im.info.get("duration"),
            "loop": im.info.get("loop"),
            "disposal": getattr(im, "disposal_method", im.info.get("disposal")),
        }
        out.append((np.asarray(im.convert("RGBA")), info))
    return out
