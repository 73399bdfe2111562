"""Held-out encoders: autoencoders the protection model never trains on, to measure transfer.

    python -m perturb.training.heldout --shared ../shared --out runs/heldout --minutes 90

The project has one real surrogate (TAEF2), and a model tuned to it alone may not move other
encoders. These two stand in for encoders we do not have, trained here on `train/` crops as
autoencoders (reconstruction loss), and saved as TorchScript files that `load_surrogate` and
`bench/efficacy.py --encoders` take:

- `taef2-reinit`: TAEF2 with its last encoder stage (1/8 resolution blocks and the latent
  projection) and the decoder's first stage re-initialised, then fine-tuned. Same early features,
  different latent space: a sibling of the surrogate.
- `sdlike`: a different family, shaped like the Stable Diffusion VAE (residual blocks with
  GroupNorm and SiLU, strided downsampling, 8 latent channels at 1/8), trained from scratch.

They need real training to stand in for anything; check the printed PSNR (TAEF2 itself reaches
~34 dB) before scoring with them. `taef2-reinit` trains only its new stages: 34 minutes on 2 cores
(about 830 steps) reach 19–23 dB on training batches, a weak autoencoder but a latent space of its
own. `sdlike` starts from nothing and needs hours. Score with one:

    .venv-train/bin/python bench/efficacy.py --surrogate runs/heldout/taef2-reinit-encoder.pt \
        --presets default --subset 4 --budgets 2,4,8

`--seed N` builds another `taef2-reinit` (its new stages drawn from another seed) as
`taef2-reinit-seedN`: a sibling to train *against* (`train --surrogates taef2,<its file>`), while
seed 1 stays held out and keeps measuring transfer.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from perturb.training.data import CropSampler, composite, list_images
from perturb.training.surrogates import load_taef2

REINIT_ENCODER_FROM = 10  # TAEF2 encoder layers 10… are the 1/8-resolution stage and projection
REINIT_DECODER_UNTIL = 6  # decoder layers …5: clamp, projection in, the 1/8-resolution blocks


def _reset(module: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in module.modules():  # the module itself first, then everything inside it
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def reinit_name(seed: int) -> str:
    """Seed 1 is the held-out sibling; other seeds are siblings to train against, named apart so
    an ensemble can never pick up the held-out one by accident."""
    return "taef2-reinit" if seed == 1 else f"taef2-reinit-seed{seed}"


def taef2_reinit(shared: Path, seed: int = 1) -> tuple[nn.Module, nn.Module]:
    base = load_taef2(shared, decoder=True)
    enc, dec = copy.deepcopy(base.encoder), copy.deepcopy(base.decoder)
    assert dec is not None
    fresh = [enc[i] for i in range(REINIT_ENCODER_FROM, len(enc))]
    fresh += [dec[i] for i in range(REINIT_DECODER_UNTIL)]
    for k, m in enumerate(fresh):
        _reset(m, seed + k)
    # only the re-initialised stages train: full fine-tuning at the new stages' learning rate
    # wrecks the pretrained ones (reconstruction fell from 14 to 13 dB in 150 steps), and the
    # kept early features are what makes this a sibling with its own latent space
    for p in list(enc.parameters()) + list(dec.parameters()):
        p.requires_grad_(False)
    for p in (p for m in fresh for p in m.parameters()):
        p.requires_grad_(True)
    return enc.train(), dec.train()


class ResBlock(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, n), nn.SiLU(), nn.Conv2d(n, n, 3, padding=1),
                                  nn.GroupNorm(8, n), nn.SiLU(), nn.Conv2d(n, n, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def sdlike(latent: int = 8, widths: tuple[int, ...] = (32, 64, 96)) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(2)
    enc: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
    for i, w in enumerate(widths):
        nxt = widths[min(i + 1, len(widths) - 1)]
        enc += [ResBlock(w), nn.Conv2d(w, nxt, 3, stride=2, padding=1)]
    enc += [ResBlock(widths[-1]), nn.GroupNorm(8, widths[-1]), nn.SiLU(),
            nn.Conv2d(widths[-1], latent, 3, padding=1)]
    dec: list[nn.Module] = [nn.Conv2d(latent, widths[-1], 3, padding=1), ResBlock(widths[-1])]
    rev = widths[::-1]
    for i, w in enumerate(rev):
        nxt = rev[min(i + 1, len(rev) - 1)]
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, nxt, 3, padding=1),
                ResBlock(nxt)]
    dec += [nn.GroupNorm(8, widths[0]), nn.SiLU(), nn.Conv2d(widths[0], 3, 3, padding=1)]
    return nn.Sequential(*enc), nn.Sequential(*dec)


def train_autoencoder(enc: nn.Module, dec: nn.Module, data: CropSampler, minutes: float,
                      lr: float = 1e-3, batch: int = 8, size: int = 128,
                      max_steps: int | None = None) -> float:
    """Reconstruction training (L1 + MSE) for a wall-clock budget; returns the last PSNR."""
    params = [p for p in list(enc.parameters()) + list(dec.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched_end = time.time() + minutes * 60
    step, last = 0, 0.0
    while time.time() < sched_end and (max_steps is None or step < max_steps):
        x = composite(data.batch(batch, size))
        y = dec(enc(x))
        mse = F.mse_loss(y, x)
        loss = mse + 0.1 * F.l1_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        last = -10 * torch.log10(mse.detach()).item()
        if step % 50 == 0:
            left = (sched_end - time.time()) / 60
            print(f"  step {step} reconstruction PSNR {last:.2f} dB, {left:.1f} min left",
                  flush=True)
    return last


def save(enc: nn.Module, dec: nn.Module, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for p in list(enc.parameters()) + list(dec.parameters()):
        p.requires_grad_(False)
    example = torch.rand(1, 3, 64, 64)
    path = out / f"{name}-encoder.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(enc.eval(), example), str(path))
        torch.jit.save(torch.jit.trace(dec.eval(), enc(example)), str(out / f"{name}-decoder.pt"))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--out", type=Path, default=Path("runs/heldout"))
    ap.add_argument("--minutes", type=float, default=90.0, help="per encoder")
    ap.add_argument("--only", choices=["taef2-reinit", "sdlike"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1,
                    help="taef2-reinit's init seed; another seed makes a sibling to train "
                         "against, saved as taef2-reinit-seed<N> (seed 1 stays held out)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    random.seed(0)
    data = CropSampler(list_images(a.shared, "train"), max_side=768, seed=3,
                       cache=Path("runs") / "cache" / "train-768.pt")
    makers = {"taef2-reinit": (reinit_name(a.seed), lambda: taef2_reinit(a.shared, a.seed)),
              "sdlike": ("sdlike", sdlike)}
    for kind, (name, make) in makers.items():
        if a.only and kind != a.only:
            continue
        enc, dec = make()
        print(f"{name}: training {a.minutes:.0f} min", flush=True)
        psnr = train_autoencoder(enc, dec, data, a.minutes)
        path = save(enc, dec, a.out, name)
        print(f"{name}: reconstruction PSNR {psnr:.2f} dB on the last batch -> {path}", flush=True)


if __name__ == "__main__":
    main()
