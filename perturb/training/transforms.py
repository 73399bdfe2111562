"""Training-time platform transforms (expectation over transforms).

What scrapers get is the upload after the site re-encodes it (EVALUATION.md: JPEG, downscale then
JPEG, noise then JPEG). The loss is taken after a random transform of this family, so the generator
learns perturbations that survive it. JPEG is real (Pillow, 4:2:0) and passed straight through for
gradients: forward is the true codec; backward is identity (BPDA) or, with `jpeg_grad="model"`,
the gradient of a differentiable model of the same codec (colour transform, 4:2:0, 8×8 DCT,
quantisation by the IJG tables with a cubic soft rounding, Shin & Song 2017), which tells the
generator that chroma detail and coefficients far below their quantiser step do not survive.
Resizing is the differentiable antialiased bilinear of PyTorch. The exact scoring transforms (PIL)
are in platform_transforms.py.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from perturb.containers import IJG_CHROMA, ijg_table


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


def _dct8() -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix (row k = frequency k)."""
    n = torch.arange(8, dtype=torch.float32)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * torch.pi / 16) * (2 / 8) ** 0.5
    d[0] /= 2**0.5
    return d


DCT8 = _dct8()
# JFIF's RGB → YCbCr (rows Y, Cb, Cr), what Pillow's encoder applies before the DCT
RGB_TO_YCC = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_JPEG_GRADS = ("identity", "model")


def _quant_table(quality: int, chroma: bool) -> torch.Tensor:
    """The 8×8 table Pillow (libjpeg) quantises with at `quality`."""
    table = ijg_table(quality, IJG_CHROMA) if chroma else ijg_table(quality)
    return torch.tensor(table, dtype=torch.float32).view(8, 8)


def _blocks_quantised(c: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One plane N×1×H×W (H, W multiples of 8): block DCT, soft quantisation, inverse DCT."""
    n, _, h, w = c.shape
    d, table = DCT8.to(c), table.to(c)
    b = c.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # N × by × bx × 8 × 8
    coef = d @ b @ d.T
    u = coef / table
    r = torch.round(u).detach()
    coef = (r + (u - r) ** 3) * table  # the value is the rounded one; the slope is 3(u-r)²
    b = d.T @ coef @ d
    return b.permute(0, 1, 3, 2, 4).reshape(n, 1, h, w)


def jpeg_model(x: torch.Tensor, quality: int) -> torch.Tensor:
    """A differentiable approximation of Pillow's JPEG round trip (for gradients only)."""
    h, w = x.shape[-2:]
    ph, pw = -h % 16, -w % 16  # 4:2:0 chroma needs whole 16×16 macroblocks
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255
    y, cb, cr = torch.einsum("cd,ndhw->nchw", RGB_TO_YCC.to(xp), xp).unbind(1)
    yq = _blocks_quantised(y.unsqueeze(1) - 128, _quant_table(quality, chroma=False)) + 128
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    ct = _quant_table(quality, chroma=True)
    chroma = torch.cat([_blocks_quantised(chroma[:, i : i + 1], ct) for i in range(2)], 1)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    cb, cr = chroma.unbind(1)
    y = yq.squeeze(1)
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (rgb / 255)[..., :h, :w]


def jpeg_st(x: torch.Tensor, quality: int, grad: str = "identity") -> torch.Tensor:
    """The real JPEG in the forward pass; in the backward pass identity (straight-through) or,
    with grad="model", the gradient of `jpeg_model`."""
    if grad not in _JPEG_GRADS:
        raise ValueError(f"jpeg_grad must be one of {_JPEG_GRADS}, not {grad!r}")
    if grad == "model":
        approx = jpeg_model(x, quality)
        return approx + (jpeg_real(x, quality) - approx).detach()
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
    jpeg_grad: str = "identity"  # backward of the JPEG step: "identity" or "model" (jpeg_st)

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
            x = jpeg_st(x, self.quality, self.jpeg_grad)
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
