"""Surrogate image encoders the protection model is trained and measured against.

TAEF2 (madebyollin/taesd, MIT) is a distilled stand-in for the FLUX.2 VAE: an encoder from RGB in
[0, 1] to 32 latent channels at 1/8 resolution, and a decoder back. The module below is written from
`../shared/surrogates/README.md`; the weights are data and stay in `../shared`.

`load_surrogate(spec)` keeps the interface open for other encoders without code changes elsewhere:

- `"taef2"`: TAEF2 from `<shared>/surrogates/taef2_{encoder,decoder}.pth`;
- a path to a TorchScript file (`torch.jit.save`d module mapping N×3×H×W in [0, 1] to latents);
- `"package.module:factory"`: a callable returning an `nn.Module` encoder (or an
  `(encoder, decoder)` tuple), e.g. a Stable Diffusion VAE encoder wrapped to take [0, 1] input.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

TAEF2_FILES = {"encoder": "taef2_encoder.pth", "decoder": "taef2_decoder.pth"}
LATENT_CHANNELS = 32


class SurrogateError(RuntimeError):
    """A surrogate encoder could not be loaded; the message says what to fix."""


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to about [-3, 3] (the decoder's first layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual 3-conv block; with `pool`, first adds a GroupNorm-ed 1×1 bottleneck of the input.

    The GroupNorm statistics span the whole feature map, which is what gives the deepest blocks
    their global context.
    """

    def __init__(self, n: int = 64, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.pool = (
            nn.Sequential(
                nn.Conv2d(n, 4 * n, 1, bias=False),
                nn.GroupNorm(4, 4 * n),
                nn.ReLU(),
                nn.Conv2d(4 * n, n, 1, bias=False),
            )
            if pool
            else None
        )
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


def taef2_encoder(n: int = 64, latent: int = LATENT_CHANNELS) -> nn.Sequential:
    """N×3×H×W in [0, 1] → N×32×H/8×W/8. Indices match the state-dict keys."""
    return nn.Sequential(
        conv(3, n), Block(n),
        conv(n, n, stride=2, bias=False), Block(n), Block(n), Block(n),
        conv(n, n, stride=2, bias=False), Block(n), Block(n), Block(n),
        conv(n, n, stride=2, bias=False), Block(n, True), Block(n, True), Block(n, True),
        conv(n, latent),
    )  # fmt: skip


def taef2_decoder(n: int = 64, latent: int = LATENT_CHANNELS) -> nn.Sequential:
    """N×32×h×w latents → N×3×8h×8w in about [0, 1]."""
    return nn.Sequential(
        Clamp(), conv(latent, n), nn.ReLU(),
        Block(n, True), Block(n, True), Block(n, True), nn.Upsample(scale_factor=2),
        conv(n, n, bias=False), Block(n), Block(n), Block(n), nn.Upsample(scale_factor=2),
        conv(n, n, bias=False), Block(n), Block(n), Block(n), nn.Upsample(scale_factor=2),
        conv(n, n, bias=False), Block(n),
        conv(n, 3),
    )  # fmt: skip


# Encoder layer indices whose outputs are useful feature taps (end of each resolution stage):
# full res after the first block, 1/2, 1/4 and 1/8 (before the latent projection), then latents.
TAEF2_TAPS = (1, 5, 9, 13, 14)


@dataclass
class Surrogate:
    """An encoder (and optional decoder) to attack and to measure against."""

    name: str
    encoder: nn.Module
    decoder: nn.Module | None = None
    sha256: dict[str, str] = field(default_factory=dict)
    taps: tuple[int, ...] = ()  # indices into a Sequential encoder for `features`

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at `taps` (the last is the latents); `[encoder(x)]` without taps."""
        if not self.taps or not isinstance(self.encoder, nn.Sequential):
            return [self.encoder(x)]
        out: list[torch.Tensor] = []
        last = max(self.taps)
        for i, layer in enumerate(self.encoder):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i == last:
                break
        return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _frozen(module: nn.Module) -> nn.Module:
    module = module.float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_state(module: nn.Module, path: Path) -> nn.Module:
    """Load a float16/32 state dict into `module` with strict=True, as float32."""
    if not path.is_file():
        raise SurrogateError(
            f"surrogate weights not found: {path} "
            "(pass --shared pointing at the shared folder that holds surrogates/)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.float() for k, v in state.items()}
    module.load_state_dict(state, strict=True)
    return _frozen(module)


def load_taef2(shared: Path, decoder: bool = True) -> Surrogate:
    folder = Path(shared) / "surrogates"
    enc_path = folder / TAEF2_FILES["encoder"]
    dec_path = folder / TAEF2_FILES["decoder"]
    sums = {enc_path.name: sha256_file(enc_path)} if enc_path.is_file() else {}
    enc = load_state(taef2_encoder(), enc_path)
    dec = None
    if decoder and dec_path.is_file():
        dec = load_state(taef2_decoder(), dec_path)
        sums[dec_path.name] = sha256_file(dec_path)
    return Surrogate("taef2", enc, dec, sums, TAEF2_TAPS)


def load_surrogate(spec: str = "taef2", shared: Path = Path("../shared")) -> Surrogate:
    """Load an encoder by spec: "taef2", a TorchScript file, or "package.module:factory"."""
    if spec == "taef2":
        return load_taef2(Path(shared))
    path = Path(spec)
    if path.suffix in {".pt", ".pth", ".ts", ".jit"} or path.is_file():
        if not path.is_file():
            raise SurrogateError(f"surrogate file not found: {path}")
        # heldout.save writes `<name>-encoder.pt` and `<name>-decoder.pt`: take the decoder too,
        # so latent damage (ΔC) is measured on a held-out encoder as on TAEF2
        dec_path = path.with_name(path.name.replace("-encoder.", "-decoder."))
        files = [path] + ([dec_path] if dec_path != path and dec_path.is_file() else [])
        modules = []
        for f in files:
            try:
                modules.append(_frozen(torch.jit.load(str(f), map_location="cpu")))
            except RuntimeError as e:
                raise SurrogateError(
                    f"{f} is not a TorchScript module ({e}); save it with torch.jit.save, "
                    "or give 'package.module:factory'"
                ) from e
        return Surrogate(
            path.stem,
            modules[0],
            modules[1] if len(modules) > 1 else None,
            {f.name: sha256_file(f) for f in files},
        )
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise SurrogateError(f"cannot import surrogate factory {spec!r}: {e}") from e
        made = factory()
        enc, dec = made if isinstance(made, tuple) else (made, None)
        return Surrogate(attr, _frozen(enc), _frozen(dec) if dec is not None else None)
    raise SurrogateError(
        f"unknown surrogate {spec!r}: "
        "use 'taef2', a TorchScript file path, or 'package.module:factory'"
    )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def main() -> None:
    """Round-trip check: encode→decode PSNR on a few val artworks (expect about 34 dB)."""
    import argparse

    from perturb.training.data import list_images, load_rgb

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("-n", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(2)
    s = load_surrogate("taef2", args.shared)
    print("sha256:", s.sha256)
    vals = []
    for p in list_images(args.shared, "val")[: args.n]:
        x = load_rgb(p, max_side=512, multiple=8).unsqueeze(0)
        with torch.no_grad():
            y = s.decoder(s.encoder(x))
        vals.append(psnr(y, x))
        print(f"{p.name}: {tuple(x.shape[-2:])} PSNR {vals[-1]:.2f} dB")
    vals.sort()
    print(f"median round-trip PSNR over {len(vals)} val images: {vals[len(vals) // 2]:.2f} dB")


if __name__ == "__main__":
    main()
