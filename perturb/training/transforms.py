"""Training-time platform transforms (expectation over transforms).

What scrapers get is the upload after the site re-encodes it (EVALUATION.md: JPEG, downscale then
JPEG, noise then JPEG). The loss is taken after a random transform of this family, so the generator
learns perturbations that survive it. JPEG is real (Pillow, 4:2:0) and passed straight through for
gradients: forward is the true codec, backward is identity (BPDA). Resizing is the differentiable
antialiased bilinear of PyTorch. The exact scoring transforms (PIL) are in platform_transforms.py.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def jpeg_real(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Real JPEG round trip (Pillow defaults: 4:2:0) of an N×3×H×W batch in [0, 1]; no gradient."""
    out = []
    arr = (x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    for a in arr:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype)


def jpeg_st(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG in the forward pass, identity in the backward pass (straight-through)."""
    return x + (jpeg_real(x, quality) - x).detach()


def quantize_st(x: torch.Tensor) -> torch.Tensor:
    """8-bit rounding with a straight-through gradient (what any saved upload goes through)."""
    return x + (torch.round(x.clamp(0, 1) * 255) / 255 - x).detach()


def resize(x: torch.Tensor, scale: float, multiple: int = 8) -> torch.Tensor:
    """Antialiased bilinear downscale, cropped to a multiple of `multiple` (for the encoder)."""
    h, w = x.shape[-2:]
    nh, nw = max(multiple, round(h * scale)), max(multiple, round(w * scale))
    y = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    return y[..., : nh - nh % multiple, : nw - nw % multiple]


def crop_to_multiple(x: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., : h - h % multiple, : w - w % multiple]


@dataclass
class Transform:
    """One sampled platform transform, applied identically to the clean and the protected batch."""

    name: str
    quality: int | None = None
    scale: float = 1.0
    noise_sigma: float = 0.0
    shift: tuple[int, int] = (0, 0)
    seed: int = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dy, dx = self.shift
        if dy or dx:  # a scraper's crop: breaks the alignment to the pattern and JPEG grids
            x = x[..., dy:, dx:]
        if self.scale != 1.0:
            x = resize(x, self.scale)
        x = crop_to_multiple(x)
        if self.noise_sigma:
            g = torch.Generator().manual_seed(self.seed)
            x = (x + self.noise_sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
        x = quantize_st(x)
        if self.quality is not None:
            x = jpeg_st(x, self.quality)
        return x


# (name, probability) of the training mixture; parameters are drawn around the scoring transforms.
MIXTURE = (("identity", 0.10), ("jpeg", 0.30), ("resize-jpeg", 0.40), ("noise-jpeg", 0.20))


def sample_transform(rng: random.Random, shift_prob: float = 0.5,
                     mixture: tuple[tuple[str, float], ...] = MIXTURE) -> Transform:
    r, name = rng.random() * sum(p for _, p in mixture), mixture[-1][0]
    for n, p in mixture:
        if r < p:
            name = n
            break
        r -= p
    shift = (rng.randrange(8), rng.randrange(8)) if rng.random() < shift_prob else (0, 0)
    seed = rng.randrange(1 << 30)
    if name == "identity":
        return Transform(name, shift=shift)
    if name == "jpeg":
        return Transform(name, quality=rng.randint(70, 95), shift=shift)
    if name == "resize-jpeg":
        scale = rng.uniform(0.5, 1.0)
        return Transform(name, quality=rng.randint(70, 90), scale=scale, shift=shift)
    return Transform(name, quality=rng.randint(70, 85), noise_sigma=0.02, shift=shift, seed=seed)
