"""Fixed linear filters of the generator's 8 × 8 cells, folded into its last layer (a diagnostic).

Which part of the perturbation's spectrum does the work after JPEG? A filter here is one linear map
of each cell's 3 · 8 · 8 pre-`tanh` values, multiplied into the output convolution `W`, so a
filtered model costs what the model costs and stays odd in the key.

- `jpeg-weight@P`: each cell's DCT coefficient (u, v), per YCbCr plane, is weighted by
  (q_min / q(u, v))^P, with q JPEG 85's quantiser step for it (IJG luma table for Y, chroma for
  Cb and Cr). P > 0 keeps what JPEG keeps and fades what it quantises away; P < 0 boosts the fine
  detail; P = 0 is the model itself.
- `chroma-pool`: Cb and Cr averaged over 2 × 2 pixels (what 4:2:0 keeps), Y untouched.

`perturb.training.compare --cell-filter SPEC` scores a filtered checkpoint beside the unfiltered
one.
"""

from __future__ import annotations

import copy

import torch

from perturb.containers import IJG_CHROMA, ijg_table
from perturb.training.generator import KeyedProtector
from perturb.training.transforms import DCT8, RGB_TO_YCC

QUALITY = 85
SPECS = "jpeg-weight@P (P a number) or chroma-pool"


def _dct_weighting(table: list[int], power: float) -> torch.Tensor:
    """64 × 64 map of a cell's row-major pixels: DCT, weight (q_min / q)^power, inverse DCT."""
    q = torch.tensor(table, dtype=torch.float64)
    d2 = torch.kron(DCT8.double(), DCT8.double())  # vec(D X Dᵀ) for a row-major 8 × 8 X
    return d2.T @ torch.diag((q.min() / q) ** power) @ d2


def _pool_2x2() -> torch.Tensor:
    """64 × 64 map of a cell's row-major pixels: each pixel becomes the mean of its 2 × 2 quad."""
    rows = torch.kron(
        torch.eye(4, dtype=torch.float64), torch.full((2, 2), 0.5, dtype=torch.float64)
    )
    return torch.kron(rows, rows)  # the same 1-D pooling of rows and of columns


def cell_filter(spec: str) -> torch.Tensor:
    """The 192 × 192 map of one cell's values in pixel-shuffle order (channel, row, column)."""
    eye = torch.eye(64, dtype=torch.float64)
    if spec == "chroma-pool":
        luma, chroma = eye, _pool_2x2()
    elif spec.startswith("jpeg-weight@"):
        try:
            power = float(spec.partition("@")[2])
        except ValueError:
            raise ValueError(f"cell filter {spec!r}: use {SPECS}") from None
        luma = _dct_weighting(ijg_table(QUALITY), power)
        chroma = _dct_weighting(ijg_table(QUALITY, IJG_CHROMA), power)
    else:
        raise ValueError(f"unknown cell filter {spec!r}: use {SPECS}")
    to_ycc = torch.kron(RGB_TO_YCC.double(), eye)
    planes = torch.block_diag(luma, chroma, chroma)
    return torch.linalg.inv(to_ycc) @ planes @ to_ycc


def filtered(model: KeyedProtector, spec: str) -> KeyedProtector:
    """A copy of `model` whose every cell is passed through `cell_filter(spec)` before the tanh."""
    if model.cfg.scale != 8:
        raise ValueError(
            f"cell filters are 8 × 8 (JPEG's blocks); this model's cells are {model.cfg.scale} px"
        )
    out = copy.deepcopy(model)
    w = out.out.weight.data  # (192, hidden, 1, 1)
    out.out.weight.data = (cell_filter(spec).float() @ w[:, :, 0, 0])[:, :, None, None]
    return out
