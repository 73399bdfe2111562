"""Training objectives on surrogate encoders.

The scored quantity is the normalised latent shift `‖E(P(x')) − E(P(x))‖² / ‖E(P(x))‖²` after a
platform transform P. We maximise its log (stable across images whose shift differs by orders of
magnitude), over the latents and over intermediate feature maps of the encoder (an ensemble of
depths: earlier features transfer better to encoders we do not have). An optional targeted "decoy"
term pulls the latents toward those of a fixed texture (Mist-style) instead of just away.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from perturb.training.surrogates import Surrogate


def normalised_shift(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ‖a − b‖² / ‖b‖² (b is the clean reference)."""
    num = (a - b).pow(2).flatten(1).sum(1)
    den = b.pow(2).flatten(1).sum(1).clamp_min(1e-8)
    return num / den


def shift_loss(
    surrogate: Surrogate,
    x_adv: torch.Tensor,
    x_clean: torch.Tensor,
    tap_weights: tuple[float, ...] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """−Σ_taps w · mean log shift; returns the loss and per-tap log shifts (for logging)."""
    with torch.no_grad():
        ref = surrogate.features(x_clean)
    adv = surrogate.features(x_adv)
    weights = tap_weights or (1.0,) * len(adv)
    loss = x_adv.new_zeros(())
    logs: dict[str, float] = {}
    for i, (fa, fr, w) in enumerate(zip(adv, ref, weights, strict=True)):
        ls = torch.log(normalised_shift(fa, fr) + 1e-10).mean()
        loss = loss - w * ls
        logs[f"tap{i}"] = ls.item()
    return loss / sum(weights), logs


def decoy_loss(
    surrogate: Surrogate, x_adv: torch.Tensor, decoy_latent: torch.Tensor
) -> torch.Tensor:
    """Mean squared distance of the latents to a decoy texture's latents (tiled to fit)."""
    z = surrogate.encoder(x_adv)
    h, w = z.shape[-2:]
    d = decoy_latent.repeat(1, 1, -(-h // decoy_latent.shape[-2]), -(-w // decoy_latent.shape[-1]))
    return F.mse_loss(z, d[..., :h, :w].expand_as(z))
