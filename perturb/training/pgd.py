"""The PGD encoder attack: the slow, per-image baseline the shipped model must beat.

This is the method of PhotoGuard's encoder attack and Mist's textural loss, as EVALUATION.md
defines the baseline: signed gradient steps on the surrogate encoder `E` that maximise the latent
shift `‖E(x + δ) − E(x)‖² / ‖E(x)‖²` under an L∞ budget `‖δ‖∞ ≤ ε`, with `x + δ` kept in [0, 1].

Choices that only make the baseline stronger (so beating it means something): a random start inside
the budget (fixed seed), a cosine-decayed step size starting at ε/4, and keeping the best iterate.
The result is quantised to 8 bits, as any image file would be; because `x` is itself 8-bit and ε is
a whole number of 1/255 steps, the quantised result still respects the budget (for a float `x` off
the 8-bit grid it is clamped back into the budget instead).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn


class PGDError(ValueError):
    """Bad input to the attack; the message says which argument and what is allowed."""


@dataclass
class PGDResult:
    """The attacked image and what it cost."""

    x_adv: torch.Tensor  # 1×3×H×W in [0, 1], on the 1/255 grid
    seconds: float  # wall time of the attack (all steps), excluding loading
    shift: float  # latent shift of the returned image (no platform transform)
    steps: int
    budget: float  # ε in [0, 1] units


def latent_shift(z: torch.Tensor, z_ref: torch.Tensor) -> torch.Tensor:
    """S = ‖z − z_ref‖² / ‖z_ref‖², summed over all elements (per batch item)."""
    dims = tuple(range(1, z.dim()))
    return (z - z_ref).pow(2).sum(dims) / z_ref.pow(2).sum(dims).clamp_min(1e-12)


def step_size(t: int, steps: int, budget: float) -> float:
    """Cosine decay from ε/4 at the first step towards ε/100 at the last."""
    lo, hi = budget / 100, budget / 4
    return lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * t / max(1, steps - 1)))


def pgd_encoder_attack(
    encoder: nn.Module, x: torch.Tensor, budget: float, steps: int = 100, seed: int = 0,
    mask: torch.Tensor | None = None,
) -> PGDResult:
    """Run `steps` signed gradient steps maximising the latent shift within `‖δ‖∞ ≤ budget`.

    `x`: 1×3×H×W in [0, 1] with H and W multiples of 8 (the encoder's stride). `mask`: 1×1×H×W
    in [0, 1], the alpha of a transparent image composited into `x`: the image changes by mask·δ,
    as a colour change δ under that alpha would once composited (None: everywhere).
    """
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise PGDError(f"x must be 1×3×H×W, got shape {tuple(x.shape)}")
    if x.shape[2] % 8 or x.shape[3] % 8:
        raise PGDError(f"H and W must be multiples of 8, got {tuple(x.shape[2:])}; crop first")
    if not 0 < budget <= 1:
        raise PGDError(f"budget must be in (0, 1] (e.g. 4/255), got {budget}")
    if steps < 1:
        raise PGDError(f"steps must be ≥ 1, got {steps}")
    if mask is not None and mask.shape != (1, 1, *x.shape[2:]):
        raise PGDError(f"mask must be 1×1×H×W like x, got shape {tuple(mask.shape)}")
    m = torch.ones(()) if mask is None else mask.detach().float()
    encoder = encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    x = x.detach().float().contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    with torch.no_grad():
        z_ref = encoder(x)
    gen = torch.Generator().manual_seed(seed)
    delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * budget
    delta = ((x + delta).clamp(0, 1) - x).contiguous(memory_format=torch.channels_last)
    best_delta, best = delta.clone(), -1.0
    for t in range(steps):
        delta.requires_grad_(True)
        shift = latent_shift(encoder(x + delta * m), z_ref).sum()
        (grad,) = torch.autograd.grad(shift, delta)
        with torch.no_grad():
            if shift.item() > best:  # the iterate that produced this shift, before the step
                best, best_delta = shift.item(), delta.detach().clone()
            delta = delta.detach() + step_size(t, steps, budget) * grad.sign()
            delta = delta.clamp(-budget, budget)
            delta = (x + delta).clamp(0, 1) - x
    with torch.no_grad():
        final = latent_shift(encoder(x + delta * m), z_ref).item()
        if final > best:
            best, best_delta = final, delta
        x_adv = torch.round((x + best_delta * m).clamp(0, 1) * 255) / 255
        # Rounding cannot leave the budget when x is 8-bit; clamp anyway for arbitrary float x.
        x_adv = torch.minimum(torch.maximum(x_adv, x - budget), x + budget).clamp(0, 1)
        shift_q = latent_shift(encoder(x_adv), z_ref).item()
    seconds = time.perf_counter() - start
    return PGDResult(x_adv.contiguous(), seconds, shift_q, steps, budget)
