"""The keyed protection model: a conditional generator fed a secret noise field (sfumato v3).

    protected = clip(x + strength · ε · tanh(PixelShuffle_s(W · h₂)), 0, 1)
    h₁ = tanh(A ∗ z) ⊙ g₁(x),   h₂ = tanh(B ∗ h₁) ⊙ g₂(x)

- `z` (the key): C channels of i.i.d. standard normal noise at 1/s resolution, drawn fresh from the
  OS's CSPRNG for every image and frame by the engine and never stored. The network turns it into
  damaging structure: two 3×3 convolutions at 1/s resolution (receptive field 5×5 cells), then a
  1×1 convolution to 3·s² values per cell, rearranged into an s×s RGB patch.
- `g₁, g₂` (the image): positive gates from the image at 1/s (mean colour and local contrast of
  each cell and its neighbours; with `cell_detail`, also the cell's s×s luminance detail) choose,
  per region, which structures and how much of each: the
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
    # the gates also read each cell's s×s luminance detail (not only its mean and contrast), so
    # they can weight the structures by what the content of the cell is (edges, texture, flat)
    cell_detail: bool = False

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
        # zero at the start: a model trained without it starts from the same function
        self.detail = nn.Conv2d(s * s, h, 1, bias=False) if cfg.cell_detail else None
        if self.detail is not None:
            nn.init.zeros_(self.detail.weight)
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

    def cell_detail(self, x: torch.Tensor) -> torch.Tensor:
        """N×s²×H/s×W/s: each cell's luminance minus the cell's mean, pixel by pixel."""
        s = self.cfg.scale
        y = (x * self.luma).sum(1, keepdim=True)
        y = y - F.interpolate(F.avg_pool2d(y, s), scale_factor=s, mode="nearest")
        return 5 * F.pixel_unshuffle(y, s)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The positive per-cell, per-channel weights g₁, g₂ the image chooses."""
        a = self.gate[0](self.features(x))
        if self.detail is not None:
            a = a + self.detail(self.cell_detail(x))
        g1, g2 = F.softplus(self.gate[2](self.gate[1](a))).chunk(2, 1)
        return g1, g2

    def delta(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The perturbation at strength 1 (before clipping); odd in `key`."""
        g1, g2 = self.gates(x)
        h1 = torch.tanh(self.key_in(key)) * g1
        h2 = torch.tanh(self.mix(h1)) * g2
        return self.cfg.eps * torch.tanh(F.pixel_shuffle(self.out(h2), self.cfg.scale))

    def forward(self, image: torch.Tensor, strength: torch.Tensor | float, key: torch.Tensor
                ) -> torch.Tensor:
        return (image + strength * self.delta(image, key)).clamp(0, 1)


def widen_into(model: KeyedProtector, state: dict[str, torch.Tensor]) -> None:
    """Load a narrower model's weights into `model` (more hidden channels) as the same function.

    The old channels keep their weights; the new ones keep `model`'s fresh initialisation, and every
    path from a new channel into an old one or into the output starts at zero, so training resumes
    from the old model's perturbation with room for more structures per cell.
    """
    h = state["key_in.weight"].shape[0]
    big = model.cfg.hidden
    if big < h:
        raise ValueError(f"cannot widen {h} hidden channels to {big}")
    new = {k: v.clone() for k, v in model.state_dict().items()}
    # gate.2 maps a (h) to [g1 (h), g2 (h)]; the wide model's g2 starts at row `big`
    rows = torch.cat([torch.arange(h), big + torch.arange(h)])
    w2, b2 = new["gate.2.weight"], new["gate.2.bias"]
    w2[rows] = 0
    w2[rows, :h] = state["gate.2.weight"]
    b2[rows] = state["gate.2.bias"]
    new["gate.0.weight"][:h] = state["gate.0.weight"]
    new["gate.0.bias"][:h] = state["gate.0.bias"]
    new["key_in.weight"][:h] = state["key_in.weight"]
    new["mix.weight"][:h] = 0
    new["mix.weight"][:h, :h] = state["mix.weight"]
    new["out.weight"].zero_()
    new["out.weight"][:, :h] = state["out.weight"]
    if "detail.weight" in state and "detail.weight" in new:
        new["detail.weight"][:h] = state["detail.weight"]
    model.load_state_dict(new)


def macs_per_pixel(cfg: GeneratorConfig) -> float:
    """Multiply-adds per full-resolution pixel (all convolutions run at 1/s resolution)."""
    h, c, s = cfg.hidden, cfg.key_channels, cfg.scale
    per_cell = 4 * h * 9 + h * 2 * h + c * h * 9 + h * h * 9 + h * 3 * s * s
    per_cell += s * s * h if cfg.cell_detail else 0
    return per_cell / (s * s) + 4  # + tanh, scale, add, clip per pixel value
