"""protect(): image bytes in, protected image bytes of the same kind out.

decode (Pillow, lazily, after the pixel limit) → infer (per frame, per tile) → encode with the
original's fidelity parameters and metadata → provenance marker. Every failure is a typed
`ProtectError`; nothing here does network I/O.
"""

from __future__ import annotations

import io
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from perturb import formats, previews, provenance
from perturb.errors import (
    CannotFitLength,
    CorruptImage,
    EmptyInput,
    ImageTooLarge,
    NotAnImage,
    ProtectError,
    ProtectTimeout,
    UnsupportedImage,
)
from perturb.formats import DEFAULT_MAX_PIXELS, Frame, why
from perturb.metadata import Metadata, collect
from perturb.models import (
    KeyGenerator,
    KeySource,
    Model,
    load_model,
    take_key_seconds,
    take_model_seconds,
)
from perturb.row_blocks import map_row_blocks

# Pillow warns (on stderr) while it reads damaged EXIF; the engine carries or refuses metadata
# itself and says so in the report, so the warning would only be noise in a user's terminal.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")

# "Changed as the model intended", for outputs that cannot hold the model's pixels exactly
# (palettes): at least this share of the visible pixels the model changed must change, and the
# error against the model's output must keep at most this share of the perturbation's energy
# (so the PSNR of the error is at least 3 dB above the PSNR of the perturbation itself).
MIN_CHANGED_SHARE = 0.5
MAX_ERROR_SHARE = 0.5


@dataclass(frozen=True)
class ProtectReport:
    """What protect() did: model, strength, per-stage seconds, PSNR of the perturbation."""

    model_id: str
    strength: float
    timings: dict[str, float]
    psnr: float
    frames: int
    width: int
    height: int
    model_version: str = ""
    fidelity: dict[str, Any] = field(default_factory=dict)
    metadata: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Protected:
    """The protected file: bytes in the input's format, and the report."""

    data: bytes
    format: str
    mime: str
    report: ProtectReport


@dataclass
class _Stats:
    """Sum of squared errors per peak value, for PSNR over all frames and channels, of the change
    as seen: weighted by alpha where there is one (a transparent pixel's colour does not show)."""

    sse: float = 0.0
    count: int = 0
    coverage: float = 1.0  # lowest visible share of a frame (alpha-weighted), for the report
    factor: float = 1.0  # the strength factor that share earned (Model.coverage)
    # Where the output cannot hold the model's pixels exactly (palettes): the perturbation the
    # model intended against the one written, alpha-weighted (see MIN_CHANGED_SHARE).
    intended_sse: float = 0.0
    error_sse: float = 0.0
    intended_pixels: int = 0
    carried_pixels: int = 0
    notes: list[str] = field(default_factory=list)

    def add(
        self, before: np.ndarray, after: np.ndarray, peak: float, alpha: np.ndarray | None = None
    ) -> None:
        def sse(y0: int, y1: int) -> float:  # in small row blocks: no whole-image float copy
            total = 0.0
            for y in range(y0, y1, 16):
                d = np.subtract(after[y : y + 16], before[y : y + 16], dtype=np.float32)
                if alpha is not None:
                    a = alpha[y : y + 16].astype(np.float32) / np.float32(np.iinfo(alpha.dtype).max)
                    d *= a.reshape(a.shape[0], a.shape[1], 1) if d.ndim == 3 else a
                d = d.ravel()
                total += float(np.dot(d, d))
            return total

        self.sse += sum(map_row_blocks(sse, before.shape[0])) / (peak * peak)
        self.count += before.size

    @property
    def psnr(self) -> float:
        if self.count == 0 or self.sse == 0:
            return math.inf
        return 10 * math.log10(self.count / self.sse)

    def add_intent(self, fit: Carried) -> None:
        self.intended_sse += fit.intended_sse
        self.error_sse += fit.error_sse
        self.intended_pixels += fit.intended_pixels
        self.carried_pixels += fit.carried_pixels

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class Carried:
    """How much of the model's intended change an output that cannot hold it exactly keeps."""

    intended_sse: float
    error_sse: float
    intended_pixels: int
    carried_pixels: int

    @property
    def changed_share(self) -> float:
        return self.carried_pixels / self.intended_pixels if self.intended_pixels else 1.0

    @property
    def error_share(self) -> float:
        return self.error_sse / self.intended_sse if self.intended_sse else 0.0

    @property
    def enough(self) -> bool:
        return self.changed_share >= MIN_CHANGED_SHARE and self.error_share <= MAX_ERROR_SHARE

    @staticmethod
    def measure(
        before: np.ndarray, intended: np.ndarray, after: np.ndarray, alpha: np.ndarray | None
    ) -> Carried:
        """`before`/`intended`/`after`: H×W×C 8-bit colour; `alpha`: H×W 8-bit or None."""
        b = before.astype(np.float32)
        want = intended.astype(np.float32) - b
        got = after.astype(np.float32) - b
        weight = None if alpha is None else alpha.astype(np.float32)[..., None] / 255.0
        err = (got - want) ** 2
        energy = want**2
        if weight is not None:
            err, energy = err * weight, energy * weight
        visible = np.ones(before.shape[:2], bool) if alpha is None else alpha > 0
        moved = np.any(want != 0, axis=2) & visible
        return Carried(
            intended_sse=float(energy.sum()),
            error_sse=float(err.sum()),
            intended_pixels=int(moved.sum()),
            carried_pixels=int((moved & np.any(got != 0, axis=2)).sum()),
        )


def protect(
    data: bytes | bytearray | memoryview | Image.Image,
    *,
    strength: str | float = "default",
    model: Model | str | os.PathLike[str] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    time_limit: float | None = None,
    ai_reservation: bool = True,
    exact_length: int | None = None,
    seed: int | None = None,
) -> Protected:
    """Protect one image (bytes or a PIL image); the result has the input's format.

    `strength`: "low" | "default" | "high" (the model card's presets) or a number ≥ 0.
    `model`: id, path to an .onnx, or a loaded Model (default: SFUMATO_MODEL, then the shipped
    model). `max_pixels`: refuse larger images (per frame, and in total for animations) before
    decoding. `time_limit`: seconds, checked between tiles and frames. `ai_reservation`: write
    IPTC plus:DataMining = prohibited for AI/ML training. `exact_length`: produce exactly this
    many bytes (re-encode smaller, then pad inside the XMP packet) or raise CannotFitLength.
    `seed`: a keyed model's key fields come from `numpy.random.default_rng(seed)`, one draw per
    frame; None (the default) seeds from the OS CSPRNG, so nobody, the caller included, can
    reproduce the perturbation. A fixed seed makes the output reproducible, and so removable by
    running the product again: for tests and benchmarks only. The seed is never written anywhere.
    """
    started = time.perf_counter()
    deadline = None if time_limit is None else time.monotonic() + float(time_limit)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError("seed must be a non-negative integer or None")
    loaded = load_model(model)
    value = loaded.resolve_strength(strength)
    keys = KeyGenerator(seed)

    raw, im, fmt = _open(data)
    try:
        return _protect_opened(
            raw, im, fmt, loaded, value, started, deadline, keys,
            max_pixels=max_pixels, ai_reservation=ai_reservation, exact_length=exact_length,
        )
    finally:
        if raw is not None:
            im.close()


def megapixels(pixels: int) -> str:
    """A pixel count in words: "12.2 MP", "0.25 MP", "0.001 MP" (never "0.0 MP")."""
    return f"{pixels / 1e6:.3g} MP" if pixels < 10_000_000 else f"{pixels / 1e6:.1f} MP"


def _open(data: Any) -> tuple[bytes | None, Image.Image, str]:
    if isinstance(data, Image.Image):
        fmt = data.format if data.format in formats.SUPPORTED else "PNG"
        return None, data, fmt
    if not isinstance(data, bytes | bytearray | memoryview):
        raise NotAnImage(f"expected image bytes or a PIL image, got {type(data).__name__}")
    raw = bytes(data)
    if not raw:
        raise EmptyInput("the image is empty (0 bytes)")
    fmt = formats.sniff_format(raw)
    if fmt is None:
        other = formats.sniff_other(raw)
        if other:
            raise UnsupportedImage(f"{other} images are not supported")
        raise NotAnImage(f"the data is not an image (starts with {raw[:8]!r})")
    try:
        im = Image.open(io.BytesIO(raw), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image is too large to decode safely: {exc}") from None
    except Image.UnidentifiedImageError:
        raise CorruptImage(f"the {fmt} file's header is damaged or incomplete") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise CorruptImage(f"the {fmt} file cannot be read: {why(exc)}") from None
    return raw, im, fmt


def _protect_opened(
    raw: bytes | None,
    im: Image.Image,
    fmt: str,
    model: Model,
    strength: float,
    started: float,
    deadline: float | None,
    rng: KeyGenerator,
    *,
    max_pixels: int | None,
    ai_reservation: bool,
    exact_length: int | None,
) -> Protected:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the {fmt} file declares an empty canvas ({width}×{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}×{height} = {megapixels(width * height)}, "
            f"over the limit of {megapixels(max_pixels)}"
        )
    try:
        # JPEG: only the primary image (an MPO's secondary images are dropped with its MPF).
        n_frames = 1 if fmt == "JPEG" else int(getattr(im, "n_frames", 1))
    except Exception as exc:
        raise CorruptImage(f"the {fmt} file's frames cannot be read: {why(exc)}") from None
    if max_pixels is not None and n_frames > 1 and width * height * n_frames > max_pixels:
        raise ImageTooLarge(
            f"the animation has {n_frames} frames of {width}×{height}, "
            f"{megapixels(width * height * n_frames)} in total, over {megapixels(max_pixels)}"
        )
    try:
        meta = collect(im, raw, fmt)
        params = formats.fidelity(im, raw, fmt, n_frames)
    except ProtectError:
        raise
    except Exception as exc:  # malformed metadata or tables: a typed error, never a crash
        raise CorruptImage(f"the {fmt} file's metadata cannot be read: {why(exc)}") from None
    stats = _Stats()
    if fmt == "PNG" and params.get("colour_type") == 0 and params.get("bit_depth") in (2, 4):
        stats.note(f"{params['bit_depth']}-bit greyscale written as 8-bit greyscale: "
                   f"{1 << params['bit_depth']} levels cannot carry the perturbation")
    timings = {"decode": 0.0, "infer": 0.0, "encode": 0.0}
    take_model_seconds()
    take_key_seconds()
    key_shape = model.key_shape(height, width)
    if key_shape is not None and strength > 0:
        rng.draw_ahead(key_shape)  # the first frame's key, drawn while the frame decodes
    frames: list[Frame] = []
    for index in range(n_frames):
        _check(deadline)
        t = time.perf_counter()
        if params.get("png16"):
            frame = formats.decode_png16(raw or b"", im)
        else:
            frame = formats.decode_frame(im, index, fmt, n_frames)
        timings["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        if frame.pixels16 is not None:
            _perturb_png16(frame, model, strength, deadline, stats, params.get("trns"), rng)
        else:
            formats.widen_low_bit_grey_key(frame.image, params)
            release = raw is not None and n_frames == 1
            frame.image = _perturb_frame(
                frame.image, model, strength, deadline, stats, fmt, rng, release=release
            )
        timings["infer"] += time.perf_counter() - t
        frames.append(frame)
    _check(deadline)
    if strength > 0:
        _require_change(stats, fmt)
    previews.refresh(meta, frames[0].image)  # no embedded copy of the original survives
    t = time.perf_counter()
    xmp_args = {
        "model_id": model.id,
        "model_version": model.version,
        "strength": strength,
        "date": provenance.marker_date(),
        "ai_reservation": ai_reservation,
    }
    encoded = _encode_fitting(frames, fmt, meta, params, xmp_args, exact_length)
    bind_started = time.perf_counter()
    encoded = _bind_marker(encoded, frames, fmt, width * height * n_frames)
    timings["bind"] = time.perf_counter() - bind_started  # part of "encode"
    timings["encode"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    timings["model"] = take_model_seconds()  # the part of "infer" spent inside onnxruntime
    timings["key"] = take_key_seconds()  # the part of "infer" spent drawing key fields
    notes = list(stats.notes) + list(meta.notes)
    if strength > 0 and stats.factor > 1:
        notes.append(
            f"{1 - stats.coverage:.0%} of the canvas is transparent, where no perturbation "
            f"shows: the visible part carries the image's budget (strength ×{stats.factor:.2f})"
        )
    report = ProtectReport(
        model_id=model.id,
        strength=strength,
        timings=timings,
        psnr=stats.psnr,
        frames=n_frames,
        width=width,
        height=height,
        model_version=model.version,
        fidelity=params,
        metadata=tuple(meta.names()),
        notes=tuple(notes),
    )
    return Protected(data=encoded, format=fmt, mime=formats.MIME[fmt], report=report)


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ProtectTimeout("protecting the image exceeded its time limit")


def _require_change(stats: _Stats, fmt: str) -> None:
    """Never mark an image protected whose visible pixels did not change as the model intended."""
    if stats.sse == 0:
        raise UnsupportedImage(
            "protection would change no visible pixel of this image (fully transparent, or "
            "colours the perturbation cannot move)",
            "nothing was marked protected; export the artwork as an RGB PNG or JPEG and retry",
        )
    fit = Carried(stats.intended_sse, stats.error_sse, stats.intended_pixels,
                  stats.carried_pixels)
    if not fit.enough:
        raise UnsupportedImage(
            f"the {fmt}'s palette cannot hold the perturbation: {fit.changed_share:.0%} of the "
            f"pixels the model changed would change, keeping "
            f"{max(0.0, 1 - fit.error_share):.0%} of its effect",
            "export the artwork as PNG (RGB) or JPEG and try again",
        )


def _bind_marker(data: bytes, frames: list[Frame], fmt: str, pixels: int) -> bytes:
    """Write the digest of the pixels `data` decodes to into its marker. A single-frame PNG
    stores exactly the frame we hold (hashed directly); anything else (lossy codecs, GIF
    palettes, composited animations, 16-bit samples) is decoded once from our own output."""
    first = frames[0]
    if (
        fmt == "PNG"
        and len(frames) == 1
        and first.pixels16 is None
        and first.image.mode in ("L", "LA", "RGB", "RGBA", "P", "I;16")
    ):
        digest = provenance.digest_frames([first.image], 1)
    else:
        try:
            digest = provenance.digest_file(data, max_pixels=pixels)
        except ProtectError:
            raise
        except Exception as exc:
            raise UnsupportedImage(f"the protected {fmt} cannot be read back: {why(exc)}") from None
    return formats.write_digest(data, fmt, digest)


def _perturb_png16(
    frame: Frame,
    model: Model,
    strength: float,
    deadline: float | None,
    stats: _Stats,
    trns: bytes | None,
    rng: KeySource,
) -> None:
    """16-bit colour or grey+alpha PNG samples, perturbed in 16 bits; alpha copied exactly."""
    pixels = frame.pixels16
    assert pixels is not None
    colour_channels = 1 if pixels.shape[2] == 2 else 3
    colour = pixels[..., :colour_channels]
    alpha = pixels[..., colour_channels] if pixels.shape[2] > colour_channels else None
    if alpha is not None:
        strength = _visible_strength(model, strength, alpha, 65535.0, stats)
    out = model.perturb(colour, strength, deadline=deadline, rng=rng)
    if trns and len(trns) == 6 and pixels.shape[2] == 3:
        key = tuple(int(v) for v in np.frombuffer(trns, dtype=">u2"))
        _keep_colour_key(colour, out, key, 65535.0)
    stats.add(colour, out, 65535.0, alpha)
    if alpha is not None:
        out = np.concatenate([out, pixels[..., colour_channels:]], axis=2)  # alpha copied exactly
    frame.pixels16 = out
    mode = {2: "LA", 3: "RGB", 4: "RGBA"}[out.shape[2]]
    frame.image = Image.fromarray((out >> 8).astype(np.uint8), mode)


# --- perturbation per frame -----------------------------------------------------------------------


def _perturb_frame(
    im: Image.Image,
    model: Model,
    strength: float,
    deadline: float | None,
    stats: _Stats,
    fmt: str,
    rng: KeySource,
    release: bool = False,
) -> Image.Image:
    """The protected copy of one frame, in the frame's mode. `release`: `im` is ours and no
    longer needed once its pixels are copied out (frees Pillow's copy early: 200 MB at 50 MP)."""
    mode = im.mode
    info = dict(im.info)
    if mode in ("RGB", "RGBA", "L", "LA"):
        arr = np.asarray(im)
        if release:
            im.close()
        if arr.ndim == 2:
            arr = arr[..., None]
        colour = 1 if mode in ("L", "LA") else 3
        pixels = arr[..., :colour]
        alpha = arr[..., colour] if arr.shape[2] > colour else None
        if alpha is not None:
            strength = _visible_strength(model, strength, alpha, 255.0, stats)
        out = _perturb_pixels(pixels, model, strength, deadline, stats, info, mode, rng)
        # alpha copied exactly: only colour is perturbed
        result = out if colour == arr.shape[2] else np.concatenate([out, arr[..., colour:]], 2)
        if fmt == "GIF" and mode == "RGBA":
            result = _fit_gif_palette(arr, result, stats)
        stats.add(arr[..., :colour], result[..., :colour], 255.0, alpha)
        del arr, pixels, alpha
        image = Image.fromarray(result[..., 0] if result.shape[2] == 1 else result, mode)
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im)
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise UnsupportedImage(f"{mode} images with values outside 0..65535 are not supported")
        pixels = arr.astype(np.uint16)[..., None]
        out = _perturb_pixels(pixels, model, strength, deadline, stats, info, mode, rng)[..., 0]
        stats.add(pixels[..., 0], out, 65535.0)
        image = Image.fromarray(out.astype(np.int32 if mode == "I" else arr.dtype))
    elif mode == "P":
        image = _perturb_palette(im, model, strength, deadline, stats, rng)
        if image.mode != "P":
            info.pop("transparency", None)  # now in the alpha channel (or there was none)
    elif mode == "1":
        # Two levels cannot carry a perturbation: widened to 8-bit greyscale.
        stats.note("1-bit black-and-white image written as 8-bit greyscale: two levels "
                   "cannot carry the perturbation")
        return _perturb_frame(im.convert("L"), model, strength, deadline, stats, fmt, rng)
    else:
        raise UnsupportedImage(f"{fmt} images in colour mode {mode} are not supported")
    image.info = info
    return image


def _visible_strength(
    model: Model, strength: float, alpha: np.ndarray, peak: float, stats: _Stats
) -> float:
    """The strength for a frame with transparency: scaled up by the model's coverage rule,
    because composited transparent pixels show none of the perturbation."""
    coverage = float(alpha.sum(dtype=np.float64)) / (alpha.size * peak)
    factor = model.coverage.factor(coverage)
    if factor > stats.factor:
        stats.coverage, stats.factor = coverage, factor
    return strength * factor


def _perturb_pixels(
    pixels: np.ndarray,
    model: Model,
    strength: float,
    deadline: float | None,
    stats: _Stats,
    info: dict[str, Any],
    mode: str,
    rng: KeySource,
) -> np.ndarray:
    peak = float(np.iinfo(pixels.dtype).max)
    out = model.perturb(pixels, strength, deadline=deadline, rng=rng)
    key = info.get("transparency")
    if key is not None and mode in ("L", "RGB", "I;16", "I;16B", "I;16L", "I"):
        _keep_colour_key(pixels, out, key, peak)
    return out


def _keep_colour_key(pixels: np.ndarray, out: np.ndarray, key: Any, peak: float) -> None:
    """tRNS colour key: keyed pixels stay transparent, no other pixel may become the key.

    For 16-bit samples the same holds for the high bytes too, so a decoder that reduces to 8
    bits before applying the key sees the original transparency as well."""
    key_arr = np.asarray(key if isinstance(key, tuple) else (key,), dtype=np.int64)
    if key_arr.size != pixels.shape[2]:
        return
    was = np.all(pixels == key_arr, axis=2)
    now = np.all(out == key_arr, axis=2)
    step = 1
    if peak > 255:
        was |= np.all(pixels >> 8 == key_arr >> 8, axis=2)
        now |= np.all(out >> 8 == key_arr >> 8, axis=2)
        step = 257
    out[was] = pixels[was]
    clash = now & ~was
    if clash.any():
        first = out[..., 0]
        moved = first[clash].astype(np.int64)
        first[clash] = np.where(moved + step <= peak, moved + step, moved - step)


def _perturb_palette(
    im: Image.Image,
    model: Model,
    strength: float,
    deadline: float | None,
    stats: _Stats,
    rng: KeySource,
) -> Image.Image:
    """A palette image, perturbed. Kept as a palette image with its exact palette when snapping
    the perturbed colours to the nearest opaque entries carries the perturbation (see
    MIN_CHANGED_SHARE; pixels of (partly) transparent entries keep their index, so alpha is
    exact); otherwise written as RGB, or RGBA when the palette has transparency, with a note."""
    index = np.asarray(im)
    raw_palette = im.getpalette("RGB") or []
    palette = np.asarray(raw_palette, dtype=np.uint8).reshape(-1, 3)
    if palette.shape[0] == 0:
        raise CorruptImage("the palette image has no palette")
    alpha = np.full(palette.shape[0], 255, dtype=np.uint8)
    transparency = im.info.get("transparency")
    if isinstance(transparency, int) and transparency < len(alpha):
        alpha[transparency] = 0
    elif isinstance(transparency, bytes | bytearray):
        alpha[: len(transparency)] = np.frombuffer(bytes(transparency)[: len(alpha)], np.uint8)
    safe = np.minimum(index, palette.shape[0] - 1)
    rgb = palette[safe]
    shown = alpha[safe] if transparency is not None else None  # per-pixel alpha
    if shown is not None:
        strength = _visible_strength(model, strength, shown, 255.0, stats)
    out = model.perturb(rgb, strength, deadline=deadline, rng=rng)
    opaque = np.flatnonzero(alpha == 255)
    new_index = index.copy()
    if opaque.size:
        changed = (alpha[safe] == 255) & np.any(out != rgb, axis=2)
        if changed.any():
            best = _nearest(out[changed], palette[opaque])
            new_index[changed] = opaque[best].astype(index.dtype)
    snapped = palette[np.minimum(new_index, palette.shape[0] - 1)]
    fit = Carried.measure(rgb, out, snapped, shown)
    if fit.enough:
        stats.add(rgb, snapped, 255.0, shown)
        result = Image.fromarray(new_index.astype(np.uint8), "P")
        result.putpalette(raw_palette, "RGB")
        return result
    # The palette cannot hold it: the model's pixels, exactly, in a mode that can.
    stats.add(rgb, out, 255.0, shown)
    if shown is not None and (shown < 255).any():
        stats.note(f"palette image ({palette.shape[0]} colours) written as 8-bit RGBA: its "
                   f"palette cannot hold the perturbation")
        return Image.fromarray(np.dstack([out, shown]), "RGBA")
    stats.note(f"palette image ({palette.shape[0]} colours) written as 8-bit RGB: its "
               f"palette cannot hold the perturbation")
    return Image.fromarray(out, "RGB")


def _perturbed_palette(colours: np.ndarray, size: int, rounds: int = 4) -> np.ndarray:
    """A palette of `size` colours for N×3 `colours`: median cut, then a few k-means rounds on
    a fixed sample (deterministic), which keeps more of a perturbation than median
    cut alone (error share 0.64 → 0.43 on a photographic 256-colour GIF, shipped model)."""
    seed = Image.fromarray(colours.reshape(1, -1, 3)).quantize(
        size, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = np.asarray(seed.getpalette("RGB") or [0, 0, 0], np.float64).reshape(-1, 3)[:size]
    rng = np.random.default_rng(0)
    sample = colours if len(colours) <= 20_000 else colours[rng.choice(len(colours), 20_000)]
    for _ in range(rounds):
        label = _nearest(sample, np.clip(np.rint(palette), 0, 255).astype(np.uint8))
        sums = np.zeros_like(palette)
        np.add.at(sums, label, sample.astype(np.float64))
        counts = np.bincount(label, minlength=len(palette))[:, None]
        palette = np.where(counts > 0, sums / np.maximum(counts, 1), palette)
    return np.clip(np.rint(palette), 0, 255).astype(np.uint8)


def _nearest(colours: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of the nearest candidate (squared RGB distance) for each colour; one search per
    distinct colour, so it stays cheap even for large images."""
    colours = colours.astype(np.int32)
    packed = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
    unique, inverse = np.unique(packed, return_inverse=True)
    ucol = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    cand = candidates.astype(np.int32)
    best = np.empty(len(unique), dtype=np.int64)
    for s in range(0, len(unique), 2048):
        d = ucol[s : s + 2048, None, :] - cand[None, :, :]
        best[s : s + 2048] = np.argmin(np.einsum("ijk,ijk->ij", d, d), axis=1)
    return best[inverse.ravel()]


def _fit_gif_palette(before: np.ndarray, after: np.ndarray, stats: _Stats) -> np.ndarray:
    """A GIF frame holds at most 256 colours (one is the transparent slot): the perturbed RGBA
    frame as colours a GIF palette can hold, exactly as it will be written. First choice: the
    colours the frame already used (re-quantisation then changes nothing else); when that
    loses the perturbation (small palettes), a palette of the perturbed colours themselves
    (exact when they fit in 255, else quantised). The carried share is recorded in `stats`;
    too little of it and the image is refused rather than marked protected."""
    opaque = before[..., 3] > 0
    alpha = before[..., 3]
    candidates = []
    colours = np.unique(before[opaque][:, :3], axis=0)
    if 0 < len(colours) <= 256:
        snapped = after.copy()
        changed = opaque & np.any(after[..., :3] != before[..., :3], axis=2)
        if changed.any():
            snapped[..., :3][changed] = colours[_nearest(after[..., :3][changed], colours)]
        candidates.append(snapped)
    packed = after[..., :3].astype(np.int32)
    packed = (packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2]
    if len(np.unique(packed[opaque])) <= 255:
        candidates.append(after)
    else:
        palette = _perturbed_palette(after[..., :3][opaque], 255)
        quantised = after.copy()
        quantised[..., :3][opaque] = palette[_nearest(after[..., :3][opaque], palette)]
        candidates.append(quantised)
    best, best_fit = candidates[0], None
    for candidate in candidates:
        fit = Carried.measure(before[..., :3], after[..., :3], candidate[..., :3], alpha)
        if best_fit is None or fit.enough and not best_fit.enough:
            best, best_fit = candidate, fit
        if fit.enough:
            break
    assert best_fit is not None
    stats.add_intent(best_fit)
    if best is not candidates[0] and len(candidates) > 1:
        stats.note("the GIF's palette was rebuilt from the perturbed colours: its own colours "
                   "cannot hold the perturbation")
    return best


# --- encoding -------------------------------------------------------------------------------------


def _encode_fitting(
    frames: list[Frame],
    fmt: str,
    meta: Metadata,
    params: dict[str, Any],
    xmp_args: dict[str, Any],
    exact_length: int | None,
) -> bytes:
    data = formats.encode(frames, fmt, meta, params, xmp_args, padding=0, quality=None)
    if exact_length is None:
        return data
    target = int(exact_length)
    quality = None
    if len(data) > target:
        data, quality = _shrink(frames, fmt, meta, params, xmp_args, target)
    missing = target - len(data)
    if missing == 0:
        return data
    padded = formats.encode(frames, fmt, meta, params, xmp_args, padding=missing, quality=quality)
    if len(padded) != target and fmt == "WEBP":
        raise CannotFitLength(
            f"a WebP file always has an even size; {target} bytes is impossible",
            "the declared upload size is odd; protect the file before uploading instead",
        )
    if len(padded) != target:
        raise CannotFitLength(f"padding produced {len(padded)} bytes instead of {target}")
    return padded


def _shrink(
    frames: list[Frame],
    fmt: str,
    meta: Metadata,
    params: dict[str, Any],
    xmp_args: dict[str, Any],
    target: int,
) -> tuple[bytes, int | None]:
    """Re-encode at lower quality until the file fits in `target` bytes."""
    if fmt == "JPEG" or (fmt == "WEBP" and not params.get("lossless")):
        start = int(params.get("quality", 90))
        for quality in range(start - 2, 9, -2):
            data = formats.encode(frames, fmt, meta, params, xmp_args, padding=0, quality=quality)
            if len(data) <= target:
                return data, quality
    elif fmt == "PNG":
        data = formats.encode(frames, fmt, meta, params, xmp_args, padding=0, quality=9)
        if len(data) <= target:
            return data, 9
    raise CannotFitLength(
        f"the protected {fmt} cannot be made as small as {target} bytes",
        "the upload's declared size is smaller than any faithful protected version",
    )


