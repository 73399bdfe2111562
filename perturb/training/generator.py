"""The protection model: a mixture of learned universal perturbation tiles (FastProtect-style).

    protected = clip(x + strength · ε · a(x) · M(x) ⊙ Σ_k w_k(x) · tile(P_k), 0, 1)

- `P_k` (K tiles of 3×T×T, bounded by tanh) are universal perturbations, tiled from the image
  origin; training makes them damaging to the surrogate encoders after re-encoding. Tiles are
  cheap at any resolution, which is what makes 4 MP in a fraction of a second possible.
- `w_k(x)`: per-region softmax weights from a tiny conv net on the 1/8-downsampled image,
  upsampled: the image picks which pattern fits each region.
- `a(x)`: a per-region amplitude in (0, 1) from the same net (trained against a differentiable
  SSIMULACRA 2, so it learns where visibility is cheap);
- `M(x)`: visibility mask from local luminance contrast (std over a window), with a floor and a cap:
  flat areas, where any pattern shows, get little; textured areas get the full budget.

Only conv / pool / resize / tile ops: exports to ONNX with dynamic H and W.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)


@dataclass
class GeneratorConfig:
    patterns: int = 8  # K
    tile: int = 32  # T (also the model's size_multiple)
    eps: float = 24 / 255  # L∞ bound at strength 1 where mask and amplitude are 1
    amplitude: bool = True  # learn a per-region amplitude a(x)
    hidden: int = 24  # channels of the selector net (at 1/8 resolution)
    mask_window: int = 9  # local-contrast window (odd)
    mask_floor: float = 0.15  # mask in flat areas
    mask_contrast: float = 0.06  # local luminance std at which the mask reaches its cap (1.0)

    def to_dict(self) -> dict:
        return asdict(self)


class PatternProtector(nn.Module):
    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        g = torch.Generator().manual_seed(0)
        self.patterns = nn.Parameter(torch.randn(cfg.patterns, 3, cfg.tile, cfg.tile, generator=g))
        h = cfg.hidden
        self.selector = nn.Sequential(
            nn.Conv2d(4, h, 3, padding=1), nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1), nn.ReLU(),
            nn.Conv2d(h, cfg.patterns + 1, 1),
        )  # fmt: skip
        with torch.no_grad():  # amplitude starts at sigmoid(-1) ≈ 0.27 of the bound
            self.selector[-1].bias[-1] = -1.0
        # learnable mask sharpness: M = clamp(floor + (std / contrast)^gamma, floor, 1)
        self.log_gamma = nn.Parameter(torch.zeros(()))
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))

    @property
    def uses_selector(self) -> bool:
        """One pattern at full amplitude needs no per-region weights: the net is skipped."""
        return self.cfg.patterns > 1 or self.cfg.amplitude

    @property
    def uses_mask(self) -> bool:
        return self.cfg.mask_floor < 1.0

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """N×1×H×W in [floor, 1]: local luminance std, normalised, smoothed."""
        k = self.cfg.mask_window
        y = (x * self.luma).sum(1, keepdim=True)
        mu = F.avg_pool2d(y, k, 1, k // 2, count_include_pad=False)
        # mean squared deviation from the local mean: no E[y²] − E[y]² cancellation, so ONNX and
        # PyTorch agree to float precision even on flat areas
        d = y - mu
        var = F.avg_pool2d(d * d, k, 1, k // 2, count_include_pad=False)
        std = torch.sqrt(var.clamp_min(0) + 1e-6)
        m = (std / self.cfg.mask_contrast).clamp(0, 1) ** torch.exp(self.log_gamma)
        m = F.avg_pool2d(m, 5, 1, 2, count_include_pad=False)  # no hard edges in the budget
        return self.cfg.mask_floor + (1 - self.cfg.mask_floor) * m

    def weights(self, x: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """N×(K+1)×H×W: K softmax weights chosen per 8×8 region from a 1/8 view (colour +
        contrast), then the amplitude a(x). `crop=False` skips the crop back to H×W, a no-op
        (but a copy in ONNX) when H and W are multiples of 8."""
        small = F.avg_pool2d(x, 8, 8, ceil_mode=True)
        y = (small * self.luma).sum(1, keepdim=True)
        contrast = F.avg_pool2d((y - F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)).abs(),
                                3, 1, 1, count_include_pad=False)
        logits = self.selector(torch.cat([small, contrast * 10], 1))
        k = self.cfg.patterns
        w = torch.softmax(logits[:, :k], 1)
        amp = torch.sigmoid(logits[:, k:]) if self.cfg.amplitude else torch.ones_like(logits[:, k:])
        w = torch.cat([w, amp], 1)
        w = F.interpolate(w, scale_factor=8.0, mode="bilinear", align_corners=False)
        return w[..., : x.shape[-2], : x.shape[-1]] if crop else w

    def tiled(self, h: int, w: int) -> torch.Tensor:
        """K×3×h×w: the patterns tiled from the origin (anchored: tiling the image is seamless)."""
        t = self.cfg.tile
        reps_h, reps_w = (h + t - 1) // t, (w + t - 1) // t
        return torch.tanh(self.patterns).repeat(1, 1, reps_h, reps_w)[..., :h, :w]

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The perturbation at strength 1 (before clipping)."""
        h, w = x.shape[-2], x.shape[-1]
        pats = self.tiled(h, w)
        if not self.uses_selector:  # a single universal pattern
            delta = self.cfg.eps * pats[0].expand_as(x)
            return delta * self.mask(x) if self.uses_mask else delta
        wts = self.weights(x)
        mix = wts[:, :1] * pats[0]  # N×3×H×W; a loop keeps memory at one image, not K images
        for k in range(1, self.cfg.patterns):
            mix = mix + wts[:, k : k + 1] * pats[k]
        return self.cfg.eps * wts[:, -1:] * self.mask(x) * mix

    def forward(self, image: torch.Tensor, strength: torch.Tensor | float = 1.0) -> torch.Tensor:
        return (image + strength * self.delta(image)).clamp(0, 1)


def macs_per_pixel(cfg: GeneratorConfig) -> float:
    """Arithmetic per full-resolution pixel, counting every window element of the pools (the
    speed budget is ~1000). Time on CPU is dominated by memory traffic, not by this count: each
    full-resolution op streams the whole image (see docs/model.md)."""
    h, k, w = cfg.hidden, cfg.patterns, cfg.mask_window
    mask = 3 + 2 * w * w + 5 * 5 + 6 if cfg.mask_floor < 1 else 0  # luma, mean, deviation, smooth
    if k == 1 and not cfg.amplitude:  # one universal pattern: scale, add, clip
        return mask + 3 * 3
    selector = (4 * h * 9 + h * h * 9 + h * (k + 1) + 3 * 64 + 2 * 9) / 64  # at 1/8 resolution
    weights = (k + 1) * 4  # bilinear upsampling of K+1 maps
    mix = 3 * k * 2 + 3 * 3  # weighted sum of the tiled patterns, mask, amplitude, clip
    return selector + mask + weights + mix
