"""The keyed protection model: a conditional generator fed a secret noise field (sfumato v3).

    protected = clip(x + strength · ε · tanh(PixelShuffle_s(W · h₂)), 0, 1)
    h₁ = tanh(A ∗ z) ⊙ g₁(x),   h₂ = tanh(B ∗ h₁) ⊙ g₂(x)

- `z` (the key): C channels of i.i.d. standard normal noise at 1/s resolution, drawn fresh from the
  OS's CSPRNG for every image and frame by the engine and never stored. The network turns it into
  damaging structure: two 3×3 convolutions at 1/s resolution (receptive field 5×5 cells), then a
  1×1 convolution to 3·s² values per cell, rearranged into an s×s RGB patch.
- `g₁, g₂` (the image): positive gates from the image at 1/s (mean colour and local contrast of
  each cell and its neighbours) choose, per region, which structures and how much of each: the
  perturbation depends on the content, so it is not stationary noise with a published spectrum.
- Odd in the key by construction (no biases on the key path; tanh is odd; the gates do not depend
  on z): `δ(−z) = −δ(z)`, so the mean over keys is exactly zero. Rerunning the product adds an
  independent perturbation instead of reproducing this one, and subtracting the mean of replays
  removes nothing of it (EVALUATION.md, "The attacker who owns the product").

Cheap at any resolution: every convolution runs at 1/s resolution; only the pixel shuffle, tanh,
scale, add and clip touch full-resolution pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)


@dataclass
class GeneratorConfig:
    key_channels: int = 8  # C: key values per cell
    scale: int = 8  # s: the key and the network run at 1/s resolution (JPEG's block size)
    hidden: int = 32  # channels of h₁, h₂
    eps: float = 24 / 255  # bound of δ at strength 1 (tanh)

    def to_dict(self) -> dict:
        return asdict(self)


class KeyedProtector(nn.Module):
    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        h, c, s = cfg.hidden, cfg.key_channels, cfg.scale
        self.gate = nn.Sequential(
            nn.Conv2d(4, h, 3, padding=1), nn.ReLU(),
            nn.Conv2d(h, 2 * h, 1),
        )  # fmt: skip
        self.key_in = nn.Conv2d(c, h, 3, padding=1, bias=False)
        self.mix = nn.Conv2d(h, h, 3, padding=1, bias=False)
        self.out = nn.Conv2d(h, 3 * s * s, 1, bias=False)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))

    @property
    def size_multiple(self) -> int:
        """H and W the model needs (the engine pads to it): a multiple of s and of JPEG's 8."""
        return max(8, self.cfg.scale)

    def key_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        s = self.cfg.scale
        return (n, self.cfg.key_channels, h // s, w // s)

    def draw_key(self, n: int, h: int, w: int, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        return torch.randn(self.key_shape(n, h, w), generator=generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """N×4×H/s×W/s: mean colour per cell and the cell's luminance contrast to its neighbours."""
        small = F.avg_pool2d(x, self.cfg.scale)
        y = (small * self.luma).sum(1, keepdim=True)
        contrast = (y - F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)).abs()
        return torch.cat([small, 10 * contrast], 1)

    def delta(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The perturbation at strength 1 (before clipping); odd in `key`."""
        g1, g2 = F.softplus(self.gate(self.features(x))).chunk(2, 1)
        h1 = torch.tanh(self.key_in(key)) * g1
        h2 = torch.tanh(self.mix(h1)) * g2
        return self.cfg.eps * torch.tanh(F.pixel_shuffle(self.out(h2), self.cfg.scale))

    def forward(self, image: torch.Tensor, strength: torch.Tensor | float, key: torch.Tensor
                ) -> torch.Tensor:
        return (image + strength * self.delta(image, key)).clamp(0, 1)


def macs_per_pixel(cfg: GeneratorConfig) -> float:
    """Multiply-adds per full-resolution pixel (all convolutions run at 1/s resolution)."""
    h, c, s = cfg.hidden, cfg.key_channels, cfg.scale
    per_cell = 4 * h * 9 + h * 2 * h + c * h * 9 + h * h * 9 + h * 3 * s * s
    return per_cell / (s * s) + 4  # + tanh, scale, add, clip per pixel value
