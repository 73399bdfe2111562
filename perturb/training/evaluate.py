"""The quantities of `../shared/docs/EVALUATION.md`, per image, and their medians over a split.

Per image `x` (8-bit RGB; transparency composited over grey 128) and protected image `x'` (the file
the product wrote, decoded and composited the same way), for each platform transform `P`:

- latent shift `S = ‖E(P(x')) − E(P(x))‖² / ‖E(P(x))‖²` (sums over all latent elements);
- protection gain `G = S(x') / S(xₙ)`, where `xₙ = clip(x + u)`, `u` uniform in `[−a, a]` per pixel
  and channel (fixed seed), and `a` is found by bracketing + bisection so that SSIMULACRA 2 of `xₙ`
  equals that of `x'` within 0.5 points (`xₙ` is rounded to 8 bits, as any image file is). For an
  image with transparency `u` is added to the colour under alpha and the result composited, the
  constraint the product works under (noise on the grey background would not be a fair yardstick);
- replay gain `Gᵣ = S(xᵣ) / S(xₙ)` for the image `xᵣ` an attacker gets by subtracting the product's
  own replays (bench/efficacy.py makes it), against the same `xₙ` (the visibility of `x'`);
- latent damage `C = PSNR(D(E(P(x))), P(x)) − PSNR(D(E(P(x'))), P(x))` and `ΔC = C(x') − C(xₙ)`;
- visibility of `x'` against `x`: SSIMULACRA 2, PSNR, SSIM.

The encoder sees images cropped to a multiple of 8 (its stride) from the top-left; nothing is
resampled. SSIMULACRA 2 is the PyPI `ssimulacra2` package's own arithmetic, driven on arrays with
the reference pyramid cached (the package only reads files): scores are identical to the package's.
"""

from __future__ import annotations

import io
import math
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from ssimulacra2 import ssimulacra2 as _s2

from perturb.training import platform_transforms
from perturb.training.platform_transforms import TRANSFORMS

GREY = 128
MATCH_TOLERANCE = 0.5  # SSIMULACRA 2 points, from EVALUATION.md
NOISE_SEED = 1234
VISIBLE_BELOW = 60.0  # EVALUATION.md: report the share of images under 60


class EvaluationError(ValueError):
    """Input the evaluation cannot score; the message says what was expected."""


# ---------------------------------------------------------------------------------------------
# Images


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    )


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """H×W×3 uint8; transparency composited over grey 128 (EVALUATION.md honesty rule)."""
    if getattr(img, "is_animated", False):
        img.seek(0)  # first frame
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (GREY, GREY, GREY, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB")).copy()


def to_colour_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H×W×3 uint8 colour, H×W uint8 alpha or None): the pixels as stored, alpha kept aside.

    `composite(colour, alpha)` equals `to_rgb_array(img)` exactly."""
    if getattr(img, "is_animated", False):
        img.seek(0)  # first frame
    if not _has_alpha(img):
        return np.asarray(img.convert("RGB")).copy(), None
    rgba = np.asarray(img.convert("RGBA"))
    return rgba[..., :3].copy(), rgba[..., 3].copy()


def composite(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Colour under alpha composited over grey 128, as `to_rgb_array` does (H×W×3 uint8)."""
    if alpha is None:
        return colour
    return to_rgb_array(Image.fromarray(np.dstack([colour, alpha]), "RGBA"))


def _open(data: bytes | Path) -> Image.Image:
    return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)


def decode_rgb(data: bytes | Path) -> np.ndarray:
    """Decode an image file (bytes or path) to H×W×3 uint8, composited over grey."""
    try:
        with _open(data) as im:
            return to_rgb_array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise EvaluationError(f"cannot decode image: {e}") from e


def decode_colour_alpha(data: bytes | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode an image file to (colour, alpha or None), see `to_colour_alpha`."""
    try:
        with _open(data) as im:
            return to_colour_alpha(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise EvaluationError(f"cannot decode image: {e}") from e


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float H×W×3 in [0, 1] → uint8 (round to nearest), as writing a file does."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def crop8(img: np.ndarray) -> np.ndarray:
    """Top-left crop to multiples of 8 (the encoder's stride)."""
    h, w = img.shape[0] - img.shape[0] % 8, img.shape[1] - img.shape[1] % 8
    if h == 0 or w == 0:
        raise EvaluationError(f"image {img.shape[1]}×{img.shape[0]} is smaller than 8 px")
    return img[:h, :w]


def _check_pair(x: np.ndarray, xp: np.ndarray) -> None:
    for name, a in (("x", x), ("x'", xp)):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise EvaluationError(f"{name} must be H×W×3 uint8, got {a.dtype} {a.shape}")
    if x.shape != xp.shape:
        raise EvaluationError(
            f"x and x' differ in size ({x.shape[1]}×{x.shape[0]} vs {xp.shape[1]}×{xp.shape[0]}); "
            "the protected image must keep the original's dimensions"
        )


# ---------------------------------------------------------------------------------------------
# Visibility

_LINEAR_LUT = _s2.srgb_to_linear(np.arange(256, dtype=np.float64))


def _xyb(linear: np.ndarray) -> np.ndarray:
    return _s2.make_positive_xyb(_s2.linear_rgb_to_xyb(linear))


def _linear(img: np.ndarray) -> np.ndarray:
    # Same values as the package's srgb_to_linear (computed by it, once, for every 8-bit level).
    return _LINEAR_LUT[img]


class Ssimulacra2Reference:
    """SSIMULACRA 2 against one reference image, with its per-scale pyramid computed once.

    Mirrors `ssimulacra2.compute_ssimulacra2` step by step (same functions, same order), so a
    score equals the package's on the same two 8-bit images; only the reference side is cached.
    """

    def __init__(self, ref: np.ndarray) -> None:
        if ref.dtype != np.uint8 or ref.ndim != 3 or ref.shape[2] != 3:
            raise EvaluationError(f"reference must be H×W×3 uint8, got {ref.dtype} {ref.shape}")
        self.shape = ref.shape
        self.scales: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        lin = _linear(ref)
        img1 = _xyb(lin)
        for scale in range(_s2.kNumScales):
            if img1.shape[0] < 8 or img1.shape[1] < 8:
                break
            self.scales.append((img1, _s2.blur_image(img1 * img1), _s2.blur_image(img1)))
            if scale < _s2.kNumScales - 1:
                lin = _s2.downsample(lin, 2, 2)
                img1 = _xyb(lin)

    def score(self, dist: np.ndarray) -> float:
        if dist.shape != self.shape or dist.dtype != np.uint8:
            raise EvaluationError(
                f"distorted image must be {self.shape} uint8 like the reference, "
                f"got {dist.dtype} {dist.shape}"
            )
        msssim = _s2.Msssim()
        lin = _linear(dist)
        img2 = _xyb(lin)
        for scale, (img1, sigma1_sq, mu1) in enumerate(self.scales):
            sigma2_sq = _s2.blur_image(img2 * img2)
            sigma12 = _s2.blur_image(img1 * img2)
            mu2 = _s2.blur_image(img2)
            data = _s2.MsssimScale()
            data.avg_ssim = _s2.ssim_map(mu1, mu2, sigma1_sq, sigma2_sq, sigma12)
            data.avg_edgediff = _s2.edge_diff_map(img1, mu1, img2, mu2)
            msssim.scales.append(data)
            if scale < len(self.scales) - 1:
                lin = _s2.downsample(lin, 2, 2)
                img2 = _xyb(lin)
        return float(msssim.score())


def ssimulacra2(ref: np.ndarray, dist: np.ndarray) -> float:
    """SSIMULACRA 2 of `dist` against `ref` (both H×W×3 uint8): 90 ≈ lossless, < 50 visible."""
    return Ssimulacra2Reference(ref).score(dist)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB (inf for identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: Gaussian window σ 1.5, K1 0.01, K2 0.03) averaged over R, G, B."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, sigma=1.5, truncate=3.5, axes=(0, 1))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


@dataclass
class Visibility:
    ssimulacra2: float
    psnr: float
    ssim: float


def visibility(
    x: np.ndarray, xp: np.ndarray, ref: Ssimulacra2Reference | None = None
) -> Visibility:
    _check_pair(x, xp)
    ref = ref or Ssimulacra2Reference(x)
    return Visibility(ref.score(xp), psnr(x, xp), ssim(x, xp))


# ---------------------------------------------------------------------------------------------
# Equal-visibility noise


def unit_noise(shape: tuple[int, ...], seed: int = NOISE_SEED) -> np.ndarray:
    """The fixed uniform noise pattern in [−1, 1] (scaled by `a` for `xₙ`)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape)


def noise_image(
    x: np.ndarray, a: float, u: np.ndarray, alpha: np.ndarray | None = None
) -> np.ndarray:
    """`xₙ = clip(x + a·u)` rounded to 8 bits (x uint8, a in [0, 1] units). With `alpha`, `x` is
    the colour under it: the noise goes there and the result is composited over grey."""
    return composite(to_uint8(x / 255.0 + a * u), alpha)


@dataclass
class NoiseMatch:
    """The equal-visibility noise image and how well it matched its SSIMULACRA 2 target."""

    image: np.ndarray
    a: float
    score: float
    target: float
    evaluations: int
    matched: bool  # |score − target| ≤ tolerance


def match_noise(
    x: np.ndarray,
    target: float,
    ref: Ssimulacra2Reference | None = None,
    seed: int = NOISE_SEED,
    tolerance: float = MATCH_TOLERANCE,
    a0: float = 4 / 255,
    max_evaluations: int = 30,
    alpha: np.ndarray | None = None,
) -> NoiseMatch:
    """Find the noise amplitude `a` whose `xₙ` scores `target` ± `tolerance` in SSIMULACRA 2.

    With `alpha`, `x` is the colour under it (see `noise_image`) and `ref` scores against the
    composited image. The score falls monotonically with `a`; we bracket by doubling/halving from
    `a0`, then bisect on log `a` with a false-position first guess (close to linear in log `a`).
    """
    ref = ref or Ssimulacra2Reference(composite(x, alpha))
    u = unit_noise(x.shape, seed)
    evals = 0
    best: tuple[float, float, np.ndarray] | None = None  # (|err|, a, image)
    cache: dict[float, float] = {}

    def f(a: float) -> float:
        nonlocal evals, best
        if a in cache:
            return cache[a]
        img = noise_image(x, a, u, alpha)
        s = ref.score(img)
        evals += 1
        cache[a] = s
        if best is None or abs(s - target) < best[0]:
            best = (abs(s - target), a, img)
        return s

    def done() -> NoiseMatch:
        assert best is not None
        err, a, img = best
        return NoiseMatch(img, a, cache[a], target, evals, err <= tolerance)

    a_min, a_max = 0.25 / 255, 1.0
    a = min(max(a0, a_min), a_max)
    s = f(a)
    if abs(s - target) <= tolerance:
        return done()
    # Bracket: lo has score above target (less visible), hi below.
    if s > target:
        lo, s_lo = a, s
        hi, s_hi = a, s
        while s_hi > target and hi < a_max and evals < max_evaluations:
            lo, s_lo = hi, s_hi
            hi = min(hi * 2, a_max)
            s_hi = f(hi)
            if abs(s_hi - target) <= tolerance:
                return done()
        if s_hi > target:
            return done()  # even a = 1 is not visible enough
    else:
        hi, s_hi = a, s
        lo, s_lo = a, s
        while s_lo < target and lo > a_min and evals < max_evaluations:
            hi, s_hi = lo, s_lo
            lo = max(lo / 2, a_min)
            s_lo = f(lo)
            if abs(s_lo - target) <= tolerance:
                return done()
        if s_lo < target:
            return done()  # even the faintest noise is more visible than x'
    first = True
    while evals < max_evaluations:
        llo, lhi = math.log(lo), math.log(hi)
        if first and s_lo != s_hi:  # false position in log a
            t = (s_lo - target) / (s_lo - s_hi)
            mid = math.exp(llo + min(max(t, 0.1), 0.9) * (lhi - llo))
        else:
            mid = math.exp(0.5 * (llo + lhi))
        first = not first
        s_mid = f(mid)
        if abs(s_mid - target) <= tolerance:
            break
        if s_mid > target:
            lo, s_lo = mid, s_mid
        else:
            hi, s_hi = mid, s_mid
        if hi / lo < 1.0005:
            break
    return done()


# ---------------------------------------------------------------------------------------------
# Latents


class LatentModel:
    """An encoder (and optional decoder) run on 8-bit images, forward only.

    With `onnx_dir`, the surrogate is exported once to ONNX and run with onnxruntime, which is
    about twice as fast as eager PyTorch on this CPU; results agree to ~1e-6 (checked on export).
    """

    def __init__(
        self,
        encoder: torch.nn.Module | None,
        decoder: torch.nn.Module | None = None,
        threads: int = 2,
        onnx_paths: tuple[str, str | None] | None = None,
    ) -> None:
        self.encoder, self.decoder, self.threads = encoder, decoder, threads
        self._sessions: tuple | None = None
        if onnx_paths is not None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            prov = ["CPUExecutionProvider"]
            enc = ort.InferenceSession(onnx_paths[0], opts, providers=prov)
            dec = (
                ort.InferenceSession(onnx_paths[1], opts, providers=prov) if onnx_paths[1] else None
            )
            self._sessions = (enc, dec)

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None or (
            self._sessions is not None and self._sessions[1] is not None
        )

    @staticmethod
    def _to_nchw(img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(crop8(img).transpose(2, 0, 1)[None], dtype=np.float32) / 255.0

    def encode(self, img: np.ndarray) -> np.ndarray:
        """H×W×3 uint8 → latents (N×C×h×w float32), image cropped to multiples of 8."""
        x = self._to_nchw(img)
        if self._sessions is not None:
            return self._sessions[0].run(None, {"image": x})[0]
        with torch.no_grad():
            return self.encoder(torch.from_numpy(x)).float().numpy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Latents → H×W×3 float in [0, 1] (clamped)."""
        if not self.has_decoder:
            raise EvaluationError("this surrogate has no decoder: latent damage C is undefined")
        if self._sessions is not None and self._sessions[1] is not None:
            y = self._sessions[1].run(None, {"latents": z})[0]
        else:
            with torch.no_grad():
                y = self.decoder(torch.from_numpy(z)).float().numpy()
        return np.clip(y[0].transpose(1, 2, 0), 0.0, 1.0)


def export_onnx(
    encoder: torch.nn.Module, decoder: torch.nn.Module | None, folder: Path
) -> tuple[str, str | None]:
    """Export the surrogate to ONNX (dynamic H, W) in `folder`; checks outputs against PyTorch."""
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    probe = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    enc_path = folder / "encoder.onnx"
    torch.onnx.export(
        encoder.eval(), (probe,), str(enc_path), input_names=["image"], output_names=["latents"],
        dynamic_axes={"image": {2: "h", 3: "w"}, "latents": {2: "h8", 3: "w8"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    with torch.no_grad():
        z = encoder(probe)
    got = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": probe.numpy()}
    )[0]
    if not np.allclose(got, z.numpy(), atol=1e-3):
        raise EvaluationError("ONNX export of the encoder disagrees with PyTorch; use threads only")
    dec_path = None
    if decoder is not None:
        dec_path = folder / "decoder.onnx"
        torch.onnx.export(
            decoder.eval(), (z,), str(dec_path), input_names=["latents"], output_names=["image"],
            dynamic_axes={"latents": {2: "h", 3: "w"}, "image": {2: "H", 3: "W"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    return str(enc_path), str(dec_path) if dec_path else None


def latent_shift(z: np.ndarray, z_ref: np.ndarray) -> float:
    """S = ‖z − z_ref‖² / ‖z_ref‖² over all elements."""
    z64, r64 = z.astype(np.float64), z_ref.astype(np.float64)
    return float(np.sum((z64 - r64) ** 2) / max(np.sum(r64**2), 1e-30))


def gain(s_protected: float, s_noise: float) -> float:
    """G = S(x') / S(xₙ) (inf if the noise moved nothing and x' did)."""
    if s_noise > 0:
        return s_protected / s_noise
    return math.inf if s_protected > 0 else 1.0


# ---------------------------------------------------------------------------------------------
# Per-image scoring


@dataclass
class _Side:
    """E(P(·)) and, with a decoder, PSNR(D(E(P(·))), P(x)) for one image under one transform."""

    z: np.ndarray
    recon_psnr: float | None


class ImageReference:
    """Everything about `x` that does not depend on `x'`, computed once per image.

    `x` is the image as scored (composited over grey); for an image with transparency pass its
    `colour` and `alpha` too (`to_colour_alpha`), where the noise yardstick adds its noise.
    With `store` (an .npz path), E(P(x)) and the reconstruction PSNRs persist across runs: they do
    not depend on the model under test, so a benchmark can compute them ahead of time.
    """

    def __init__(
        self,
        x: np.ndarray,
        model: LatentModel,
        transforms: Sequence[str] = TRANSFORMS,
        store: Path | None = None,
        colour: np.ndarray | None = None,
        alpha: np.ndarray | None = None,
    ) -> None:
        if alpha is not None and (
            colour is None or not np.array_equal(composite(colour, alpha), x)
        ):
            raise EvaluationError("x must be `colour` under `alpha` composited over grey")
        self.x = x
        self.colour = x if alpha is None else colour
        self.alpha = alpha
        self.model = model
        self.transforms = tuple(transforms)
        self.ssim2 = Ssimulacra2Reference(x)
        self._px: dict[str, np.ndarray] = {}
        self._sides: dict[tuple[str, bool], _Side] = {}
        self.store = store
        if store is not None and store.is_file():
            with np.load(store) as f:
                for key in f.files:
                    t, dmg, kind = key.split("|")
                    if kind == "z":
                        rec = f[f"{t}|{dmg}|rec"].item() if dmg == "1" else None
                        self._sides[(t, dmg == "1")] = _Side(f[key], rec)

    def _save(self) -> None:
        if self.store is None:
            return
        arrays: dict[str, np.ndarray] = {}
        for (t, dmg), side in self._sides.items():
            arrays[f"{t}|{int(dmg)}|z"] = side.z
            if dmg:
                arrays[f"{t}|1|rec"] = np.array(side.recon_psnr)
        self.store.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.store.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(self.store)

    def px(self, t: str) -> np.ndarray:
        if t not in self._px:
            self._px[t] = crop8(platform_transforms.apply(t, self.x))
        return self._px[t]

    def side(self, t: str, img: np.ndarray | None, damage: bool) -> _Side:
        """E(P(img)) and the reconstruction PSNR against P(x); img=None means x itself."""
        if img is None:
            for key in ((t, damage), (t, True)):  # a side with damage also serves one without
                if key in self._sides:
                    return self._sides[key]
        p = self.px(t) if img is None else crop8(platform_transforms.apply(t, img))
        z = self.model.encode(p)
        rec = None
        if damage:
            y = self.model.decode(z)
            ref = self.px(t).astype(np.float64) / 255.0
            h, w = min(y.shape[0], ref.shape[0]), min(y.shape[1], ref.shape[1])
            mse = float(np.mean((y[:h, :w] - ref[:h, :w]) ** 2))
            rec = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
        side = _Side(z, rec)
        if img is None:
            self._sides[(t, damage)] = side
            self._save()
        return side

    def prepare(self, damage: bool = True) -> None:
        """Compute the x side for every transform now (e.g. before the model under test exists)."""
        for t in self.transforms:
            self.side(t, None, damage and self.model.has_decoder)


def score_image(
    ref: ImageReference,
    xp: np.ndarray,
    damage: bool | Sequence[str] = True,
    transforms: Sequence[str] | None = None,
    a0: float = 4 / 255,
    seed: int = NOISE_SEED,
    replay: np.ndarray | None = None,
) -> dict:
    """All EVALUATION.md quantities for one protected image `xp` of the reference image.

    `damage`: compute C and ΔC (needs a decoder) — True for every transform, or the transforms to
    compute it for; `transforms`: which platform transforms (None: all of the reference's).
    `replay`: the image the replay attack recovers from `xp` (composited like `xp`), scored the
    same way against the noise of `xp`'s visibility: `S_replay`, `G_replay` per transform.
    """
    x = ref.x
    _check_pair(x, xp)
    if replay is not None:
        _check_pair(x, replay)
    vis = visibility(x, xp, ref.ssim2)
    noise = match_noise(ref.colour, vis.ssimulacra2, ref.ssim2, seed=seed, a0=a0, alpha=ref.alpha)
    per_t: dict[str, dict] = {}
    for t in ref.transforms if transforms is None else transforms:
        dmg = ref.model.has_decoder and (damage if isinstance(damage, bool) else t in damage)
        base = ref.side(t, None, dmg)
        prot = ref.side(t, xp, dmg)
        nois = ref.side(t, noise.image, dmg)
        s_p, s_n = latent_shift(prot.z, base.z), latent_shift(nois.z, base.z)
        row = {"S": s_p, "S_noise": s_n, "G": gain(s_p, s_n)}
        if replay is not None:
            s_r = latent_shift(ref.side(t, replay, False).z, base.z)
            row.update({"S_replay": s_r, "G_replay": gain(s_r, s_n)})
        if dmg:
            c_p = base.recon_psnr - prot.recon_psnr
            c_n = base.recon_psnr - nois.recon_psnr
            row.update({"C": c_p, "C_noise": c_n, "dC": c_p - c_n})
        per_t[t] = row
    record = {
        "visibility": {"ssimulacra2": vis.ssimulacra2, "psnr": vis.psnr, "ssim": vis.ssim},
        "noise": {
            "a": noise.a, "a_255": noise.a * 255, "ssimulacra2": noise.score,
            "matched": noise.matched, "evaluations": noise.evaluations,
            "under_alpha": ref.alpha is not None,
        },
        "transforms": per_t,
    }  # fmt: skip
    if replay is not None:
        rv = visibility(x, replay, ref.ssim2)
        record["replay"] = {"ssimulacra2": rv.ssimulacra2, "psnr": rv.psnr, "ssim": rv.ssim}
    return record


# ---------------------------------------------------------------------------------------------
# Summaries


def median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


@dataclass
class Summary:
    """Medians over a split of per-image records from `score_image`."""

    n: int
    ssimulacra2: float | None
    share_under_60: float | None
    psnr: float | None
    ssim: float | None
    noise_matched: float | None  # share of images whose noise hit its target within 0.5
    transforms: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "n": self.n, "ssimulacra2_median": self.ssimulacra2,
            "share_under_60": self.share_under_60, "psnr_median": self.psnr,
            "ssim_median": self.ssim, "noise_matched_share": self.noise_matched,
            "transforms": self.transforms,
        }  # fmt: skip


def summarize(records: Sequence[dict]) -> Summary:
    n = len(records)
    if n == 0:
        return Summary(0, None, None, None, None, None, {})
    s2 = [r["visibility"]["ssimulacra2"] for r in records]
    transforms: dict[str, dict[str, float | None]] = {}
    names = list(dict.fromkeys(t for r in records for t in r["transforms"]))  # in scoring order
    for t in names:
        rows = [r["transforms"][t] for r in records if t in r["transforms"]]
        keys = ("S", "S_noise", "G", "C", "C_noise", "dC", "S_replay", "G_replay")
        transforms[t] = {k: median(row.get(k) for row in rows) for k in keys}
        transforms[t]["n"] = len(rows)
    return Summary(
        n=n,
        ssimulacra2=median(s2),
        share_under_60=sum(s < VISIBLE_BELOW for s in s2) / n,
        psnr=median(r["visibility"]["psnr"] for r in records),
        ssim=median(r["visibility"]["ssim"] for r in records),
        noise_matched=sum(bool(r["noise"]["matched"]) for r in records) / n,
        transforms=transforms,
    )


# ---------------------------------------------------------------------------------------------
# Quick gain for tuning during training


def quick_gain(
    protect: Callable[[np.ndarray], np.ndarray],
    images: Sequence[np.ndarray | Path | str],
    encoder: torch.nn.Module,
    decoder: torch.nn.Module | None = None,
    transforms: Sequence[str] = ("jpeg85", "resize-jpeg"),
    max_side: int = 256,
    threads: int = 2,
) -> dict:
    """Median G (per transform) and SSIMULACRA 2 of `protect` on a handful of val images.

    `protect` maps H×W×3 float32 RGB in [0, 1] to the protected array of the same shape (its output
    is rounded to 8 bits, as a file would be; no product re-encoding). Images are paths or uint8
    arrays, downscaled to ≤ `max_side` and cropped to multiples of 8. For tuning on `val/` only;
    `bench/efficacy.py` gives the reported numbers.
    """
    torch.set_num_threads(threads)
    model = LatentModel(encoder, decoder, threads)
    records = []
    for item in images:
        x = decode_rgb(Path(item)) if isinstance(item, (str, Path)) else item
        if max(x.shape[:2]) > max_side:
            s = max_side / max(x.shape[:2])
            size = (max(8, round(x.shape[1] * s)), max(8, round(x.shape[0] * s)))
            x = np.asarray(Image.fromarray(x).resize(size, Image.LANCZOS))
        x = crop8(x)
        xp = to_uint8(np.asarray(protect(x.astype(np.float32) / 255.0), dtype=np.float32))
        ref = ImageReference(x, model, transforms)
        records.append(score_image(ref, xp, damage=decoder is not None))
    summary = summarize(records)
    return {
        "n": summary.n,
        "ssimulacra2": summary.ssimulacra2,
        "share_under_60": summary.share_under_60,
        "G": {t: summary.transforms[t]["G"] for t in transforms},
        "dC": {t: summary.transforms[t].get("dC") for t in transforms} if decoder else None,
    }


def export_for_workers(encoder: torch.nn.Module, decoder: torch.nn.Module | None) -> tuple:
    """Export to a fresh temporary folder (kept for the process lifetime); returns ONNX paths."""
    folder = Path(tempfile.mkdtemp(prefix="sfumato-eval-"))
    return export_onnx(encoder, decoder, folder)
