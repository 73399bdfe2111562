"""Artwork loading for training and validation.

Images come from `<shared>/data/artworks/{train,val}/`. Per EVALUATION.md's honesty rules, images
with transparency are scored composited over mid-grey (128). Training crops keep colour and alpha
apart, as the product sees them: the generator perturbs the stored colour (also under transparent
pixels), and the loss compares both sides composited over grey, so only what shows counts.
`val/` is for tuning and reporting; `train/` is only trained on.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
GREY = 128


class DataError(RuntimeError):
    """The artwork folder is missing or empty; the message says where it looked."""


def artworks_dir(shared: Path, split: str) -> Path:
    return Path(shared) / "data" / "artworks" / split


def list_images(shared_or_dir: Path, split: str | None = None) -> list[Path]:
    """Sorted image paths of a split (`split` given) or of a plain folder (`split=None`)."""
    folder = artworks_dir(shared_or_dir, split) if split else Path(shared_or_dir)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder} (pass --shared or a folder of images)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"no images in {folder}")
    return paths


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over grey 128 (EVALUATION.md)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (GREY, GREY, GREY, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def to_rgba(img: Image.Image) -> Image.Image:
    """RGBA with straight (not premultiplied) colour; opaque images get alpha 255."""
    return img.convert("RGBA")


def composite(rgba: torch.Tensor) -> torch.Tensor:
    """N×4×H×W colour + alpha in [0, 1] → N×3×H×W composited over grey 128 (EVALUATION.md)."""
    colour, alpha = rgba[:, :3], rgba[:, 3:]
    return alpha * colour + (1 - alpha) * (GREY / 255)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    arr = (x.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def load_rgb(path: Path, max_side: int | None = None, multiple: int = 1,
             alpha: bool = False) -> torch.Tensor:
    """3×H×W float in [0, 1] (4×H×W colour + alpha with `alpha`); optionally downscaled to
    `max_side` and cropped to a `multiple`."""
    with Image.open(path) as im:
        img = to_rgba(im) if alpha else to_rgb(im)
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS
        )
    w, h = img.width - img.width % multiple, img.height - img.height % multiple
    if (w, h) != img.size:
        img = img.crop((0, 0, w, h))
    return pil_to_tensor(img)


class CropSampler:
    """Random 4×S×S crops (colour + alpha) from a set of images, held in memory (the corpus is
    small: ≤ 1024 px each); `composite` turns a batch into what is scored.

    Each image is kept at full size and at a random smaller scale is cropped on the fly, so the
    generator sees both native detail and downscaled content.
    """

    def __init__(self, paths: list[Path], max_side: int = 1024, seed: int = 0,
                 cache: Path | None = None) -> None:
        key = [str(p) for p in paths] + [str(max_side), "rgba"]
        if cache is not None and cache.is_file():
            stored = torch.load(cache, weights_only=False)
            if stored.get("key") == key:
                self.images = stored["images"]
            else:
                cache.unlink()
        if cache is None or not cache.is_file():  # decoding hundreds of images costs a minute
            self.images = [(load_rgb(p, max_side=max_side, alpha=True) * 255).round()
                           .to(torch.uint8) for p in paths]
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"key": key, "images": self.images}, cache)
        self.rng = random.Random(seed)

    def crop(self, size: int) -> torch.Tensor:
        img = self.images[self.rng.randrange(len(self.images))].float() / 255
        _, h, w = img.shape
        if min(h, w) < size:  # upscale tiny images just enough
            s = size / min(h, w)
            img = torch.nn.functional.interpolate(
                img[None], size=(max(size, round(h * s)), max(size, round(w * s))),
                mode="bilinear", align_corners=False,
            )[0].clamp(0, 1)
            _, h, w = img.shape
        elif self.rng.random() < 0.3:  # sometimes a downscaled view (0.5–1.0)
            s = self.rng.uniform(max(0.5, size / min(h, w)), 1.0)
            if s < 0.99:
                img = torch.nn.functional.interpolate(
                    img[None], scale_factor=s, mode="bilinear", antialias=True,
                    align_corners=False,
                )[0].clamp(0, 1)
                _, h, w = img.shape
        y = self.rng.randrange(h - size + 1)
        x = self.rng.randrange(w - size + 1)
        out = img[:, y : y + size, x : x + size]
        if self.rng.random() < 0.5:
            out = out.flip(-1)
        return out

    def batch(self, n: int, size: int) -> torch.Tensor:
        return torch.stack([self.crop(size) for _ in range(n)])
