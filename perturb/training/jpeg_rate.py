"""A differentiable estimate of what a perturbation costs in JPEG bytes.

The product re-encodes a JPEG upload with the original's quantisation tables, so every DCT
coefficient the perturbation moves by more than a quantisation step costs bits (artworks are
often saved at quality 90–95, where the steps are small). The estimate is the usual rate proxy:
`Σ log2(1 + |c / q|)` over the 8×8 DCT coefficients `c` of Y, Cb and Cr, with `q` the IJG tables
at the given quality. Training penalises the protected crop's estimate relative to the clean
crop's, so the generator learns structure that the quantiser keeps cheaply.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# IJG (Annex K) base tables, row-major.
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
# JPEG's RGB → YCbCr (full range), rows Y, Cb, Cr.
_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def quant_table(base: tuple[int, ...], quality: int) -> torch.Tensor:
    """The IJG scaling of a base table to a quality (1–100), as libjpeg does it."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return torch.tensor([min(255, max(1, (v * scale + 50) // 100)) for v in base],
                        dtype=torch.float32)


def dct_basis() -> torch.Tensor:
    """64×1×8×8 orthonormal 2-D DCT-II filters, in the tables' row-major order."""
    k = torch.arange(8, dtype=torch.float64)
    c = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16)  # freq × position
    c[0] /= math.sqrt(2)
    c *= 0.5
    basis = c[:, None, :, None] * c[None, :, None, :]  # u, v, y, x
    return basis.reshape(64, 1, 8, 8).float()


class JpegRate(torch.nn.Module):
    """Estimated bits per pixel of an N×3×H×W batch in [0, 1] (H, W multiples of 8)."""

    def __init__(self, quality: int = 95) -> None:
        super().__init__()
        self.register_buffer("ycc", torch.tensor(_YCC).view(3, 3, 1, 1))
        self.register_buffer("basis", dct_basis())
        q = torch.stack([quant_table(LUMA_TABLE, quality), quant_table(CHROMA_TABLE, quality),
                         quant_table(CHROMA_TABLE, quality)])
        self.register_buffer("q", q.view(1, 3, 64, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ycc = F.conv2d(x * 255, self.ycc)  # Cb, Cr centred on 0; Y's DC offset is irrelevant
        coeffs = F.conv2d(ycc.reshape(n * 3, 1, h, w), self.basis, stride=8)
        coeffs = coeffs.reshape(n, 3, 64, h // 8, w // 8) / self.q
        bits = torch.log2(1 + coeffs.abs()).sum((1, 2, 3, 4))
        return bits / (h * w)
