"""Protection models: model card, sha256 check, one onnxruntime session per model, tiling.

A model is `<id>.onnx` with its card `<id>.json` next to it (docs/architecture.md). The engine asks
a `Model` to perturb an image array; this module pads to the card's size multiple and, for large
images, tiles with overlap (linear blending of the perturbation) or infers at a capped working
resolution and upsamples the perturbation — whichever the card declares. Work is done per tile or
per strip of rows so a 50 MP image never exists as one float array.

A keyed model (the card's `contract.key`) also takes a secret noise field `key`, drawn per image
and frame from a generator the caller seeds (by default from the OS CSPRNG), so running the public
model again cannot reproduce, and subtract, a perturbation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perturb.errors import InvalidStrength, ModelUnavailable, ProtectTimeout
from perturb.row_blocks import map_row_blocks

# The shipped model's id; set (one line) when the trained model lands in onnx_models/.
DEFAULT_MODEL: str | None = "sfumato-keyed-v3"

MODELS_DIR = Path(__file__).resolve().parent.parent / "onnx_models"
MAX_KEY_CHANNELS = 256  # a card asking for more is broken, not a real model
PRESET_NAMES = ("low", "default", "high")
# Rec. 601 luma weights: greyscale images receive the luminance of the colour perturbation.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def models_dir() -> Path:
    """Where model ids are looked up: `SFUMATO_MODELS_DIR`, else `onnx_models/` of the checkout."""
    return Path(os.environ.get("SFUMATO_MODELS_DIR") or MODELS_DIR)


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads slow ONNX inference down)."""
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        logical = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        physical = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                physical = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
                cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(logical, len(cores) or logical))


def inference_threads() -> int:
    """Intra-op threads: `SFUMATO_THREADS`, else physical cores capped at 8."""
    env = os.environ.get("SFUMATO_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ModelUnavailable(
                f"SFUMATO_THREADS={env!r} is not a number", "set it to a thread count such as 4"
            ) from None
    return min(8, physical_cores())


@dataclass(frozen=True)
class LargeImages:
    """How the card wants big images handled: tiles (`tile`, `overlap`) or `max_side`."""

    mode: str = "tile"
    tile: int = 1024
    overlap: int = 64
    max_side: int = 1024


@dataclass(frozen=True)
class Coverage:
    """How strength follows the visible share of a transparent image (the card's `coverage`).

    Transparent pixels show none of the perturbation once the image is composited, so the visible
    part carries the whole image's visibility budget: strength × coverage^−exponent, at most
    `max_factor` times. Calibrated with the presets; exponent 0 turns it off.
    """

    exponent: float = 0.0
    max_factor: float = 1.0

    def factor(self, coverage: float) -> float:
        if not 0 < coverage < 1 or self.exponent == 0:
            return 1.0
        log_factor = -self.exponent * math.log(coverage)
        return min(self.max_factor, math.exp(min(log_factor, 700.0)))  # exp(>709) overflows


@dataclass(frozen=True)
class KeySpec:
    """A keyed model's secret input (the card's `contract.key`): i.i.d. standard normal float32
    of shape N×channels×(H/scale)×(W/scale) for the padded H, W, fresh per image and frame."""

    input: str = "key"
    channels: int = 1
    scale: int = 1

    def shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The key field for a padded height × width (multiples of the size multiple)."""
        return (1, self.channels, height // self.scale, width // self.scale)


def fresh_generator() -> np.random.Generator:
    """A generator seeded with 128 bits from the OS CSPRNG: the default secret of a protection."""
    return np.random.default_rng(secrets.randbits(128))


class KeyGenerator:
    """The key fields of one protect() call: `numpy.random.default_rng(seed)` (seed: 128 bits from
    the OS CSPRNG unless given), one draw per frame, in order.

    `draw_ahead(shape)` starts the next draw on a background thread (numpy releases the GIL while
    it fills the array), so it overlaps the caller's decoding instead of adding to it; the draws
    come out the same either way, so a seed reproduces the output regardless."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)
        self._ahead: tuple[tuple[int, ...], threading.Thread, list[np.ndarray]] | None = None

    def draw_ahead(self, shape: tuple[int, ...]) -> None:
        if self._ahead is not None:
            return
        box: list[np.ndarray] = []
        thread = threading.Thread(
            target=lambda: box.append(self._rng.standard_normal(shape, dtype=np.float32)),
            name="sfumato-key", daemon=True,
        )  # fmt: skip
        thread.start()
        self._ahead = (tuple(shape), thread, box)

    def standard_normal(self, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """The next float32 standard normal field of `shape` (the one drawn ahead, if it fits)."""
        if self._ahead is not None:
            ahead, thread, box = self._ahead
            self._ahead = None
            thread.join()
            if ahead == tuple(shape) and box:
                return box[0]
        return self._rng.standard_normal(shape, dtype=np.float32)


# Where key fields come from: a generator (tests, calibration) or one protect() call's keys.
KeySource = np.random.Generator | KeyGenerator


@dataclass
class Model:
    """A loaded model: its card, and the onnxruntime session (shared, thread-safe `run`)."""

    id: str
    version: str
    path: Path
    card: dict[str, Any]
    size_multiple: int
    large_images: LargeImages
    presets: dict[str, float]
    session: Any = field(repr=False)
    coverage: Coverage = field(default_factory=lambda: Coverage())
    key: KeySpec | None = None

    @property
    def keyed(self) -> bool:
        """Whether the model takes a secret key field (and so cannot be replayed)."""
        return self.key is not None

    def padded(self, height: int, width: int) -> tuple[int, int]:
        """Height and width rounded up to the card's size multiple (what the model sees)."""
        m = self.size_multiple
        return -(-height // m) * m, -(-width // m) * m

    def key_shape(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """The shape of the key field `perturb` draws for a height × width frame (None: unkeyed)."""
        if self.key is None:
            return None
        li = self.large_images
        if li.mode == "working_resolution" and max(height, width) > li.max_side:
            height, width = self._working_size(height, width)
        return self.key.shape(*self.padded(height, width))

    def _working_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.large_images.max_side / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def draw_key(self, rng: KeySource, height: int, width: int) -> np.ndarray:
        """The key field for a height × width input (padded here), drawn from `rng`."""
        assert self.key is not None
        ph, pw = self.padded(height, width)
        started = time.perf_counter()
        key = rng.standard_normal(self.key.shape(ph, pw), dtype=np.float32)
        _key_seconds.value = getattr(_key_seconds, "value", 0.0) + (
            time.perf_counter() - started
        )
        return key

    def resolve_strength(self, strength: str | float | int) -> float:
        """Map a preset name through the card's presets; validate numbers."""
        if isinstance(strength, str):
            key = strength.strip().lower()
            if key in self.presets:
                return float(self.presets[key])
            try:
                value = float(key)
            except ValueError:
                raise InvalidStrength(f"unknown strength {strength!r}") from None
        elif isinstance(strength, bool) or not isinstance(strength, int | float):
            raise InvalidStrength(f"strength must be a preset name or a number, not {strength!r}")
        else:
            value = float(strength)
        if not math.isfinite(value) or value < 0:
            raise InvalidStrength(f"strength {strength!r} is not a non-negative finite number")
        return value

    def run(self, x: np.ndarray, strength: float, key: np.ndarray | None = None) -> np.ndarray:
        """One model call on a padded, contiguous float32 3×H×W input in [0, 1]; returns the
        model's `protected` (3×H×W float32). Non-finite outputs are replaced by the input: a
        broken model must not write NaN or infinities into pixels."""
        _, h, w = x.shape
        feeds = {"image": x[None], "strength": np.asarray(strength, dtype=np.float32)}
        if self.key is not None:
            expected = self.key.shape(h, w)
            if key is None or key.shape != expected:
                got = None if key is None else key.shape
                raise ValueError(f"keyed model {self.id} needs a key {expected}, got {got}")
            feeds[self.key.input] = np.ascontiguousarray(key, dtype=np.float32)
        started = time.perf_counter()
        try:
            out = self.session.run(["protected"], feeds)[0]
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelUnavailable(
                f"model {self.path} failed while running on a {w}×{h} image: {str(exc)[:200]}",
                "the model file is broken or does not follow the contract; reinstall it",
            ) from None
        _model_seconds.value = getattr(_model_seconds, "value", 0.0) + (
            time.perf_counter() - started
        )
        if out.shape != (1, 3, h, w):
            raise ModelUnavailable(
                f"model {self.path} returned shape {out.shape} for input {(1, 3, h, w)}",
                "the model does not follow the contract (same N×3×H×W out as in)",
            )
        out = out[0]
        if not math.isfinite(float(out.sum())):  # one cheap pass; overflow only costs a look
            bad = ~np.isfinite(out)
            out[bad] = x[bad]
        return out

    def infer(
        self, chw: np.ndarray, strength: float, key: np.ndarray | None = None
    ) -> np.ndarray:
        """Run the model on one float32 3×H×W array in [0, 1]; returns the perturbation (3×H×W).

        Pads (reflect) to the size multiple and crops back; `key` (keyed models) is the key
        field of the padded size (`draw_key`).
        """
        _, h, w = chw.shape
        ph, pw = self.padded(h, w)
        x = np.empty((3, ph, pw), dtype=np.float32)
        x[:, :h, :w] = chw
        _pad_in_place(x, h, w)
        delta = self.run(x, strength, key)[:, :h, :w]
        delta -= chw
        return delta

    def perturb(
        self,
        pixels: np.ndarray,
        strength: float,
        *,
        deadline: float | None = None,
        rng: KeySource | None = None,
    ) -> np.ndarray:
        """Perturb an H×W×C (C = 1 or 3) uint8/uint16 array; returns a new array of that dtype.

        Greyscale (C = 1) is fed to the model as RGB and receives the luminance of the delta.
        `deadline` (time.monotonic) is checked between tiles. `rng`: where a keyed model's key
        field is drawn from (one draw per call, i.e. per frame); None draws a fresh secret.
        Work happens in channel-first float32 (the model's layout) one tile or strip at a time,
        channel by channel and in row blocks that stay in cache.
        """
        h, w, c = pixels.shape
        out = np.empty_like(pixels)
        if strength == 0 or h == 0 or w == 0:
            out[...] = pixels
            return out
        if self.key is not None and rng is None:
            rng = fresh_generator()

        def check_time() -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise ProtectTimeout("protecting the image exceeded its time limit")

        li = self.large_images
        if li.mode == "working_resolution" and max(h, w) > li.max_side:
            self._perturb_working_resolution(pixels, out, strength, rng, check_time)
        else:
            # one key field for the whole padded frame; each tile gets its slice of it
            key = None if rng is None or self.key is None else self.draw_key(rng, h, w)
            tile = max(h, w) if li.mode != "tile" else li.tile
            self._perturb_tiled(pixels, out, tile, li.overlap, strength, key, check_time)
        return out

    def _perturb_tiled(
        self,
        pixels: np.ndarray,
        out: np.ndarray,
        tile: int,
        overlap: int,
        strength: float,
        key: np.ndarray | None,
        check_time: Callable[[], None],
    ) -> None:
        """Tiles with origins on multiples of the size multiple, blended with linear ramps.

        The blend sums the model's protected outputs (the ramps sum to 1, so that is the image
        plus the blended perturbation); only the overlaps are accumulated, the rest of each
        tile is written straight from the model's output.
        """
        h, w, _ = pixels.shape
        m = self.size_multiple
        tile = max(m, tile - tile % m)
        overlap = min(overlap, tile // 2)
        step = max(m, (tile - overlap) // m * m)
        if 2 * step < tile:  # at most two tiles may overlap, or the ramps stop summing to 1
            step = -(-tile // (2 * m)) * m
        ys = _spans(h, tile, step)
        xs = _spans(w, tile, step)

        def protected(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            check_time()
            ph, pw = self.padded(y1 - y0, x1 - x0)
            k = None
            if key is not None and self.key is not None:
                s = self.key.scale
                k = key[:, :, y0 // s : (y0 + ph) // s, x0 // s : (x0 + pw) // s]
            x = _model_input(pixels, y0, y1, x0, x1, ph, pw)
            return self.run(x, strength, k)[:, : y1 - y0, : x1 - x0]

        carry: np.ndarray | None = None  # rows shared with this strip, summed so far
        for i, (y0, y1) in enumerate(ys):
            rows = y1 - y0
            top, bottom = _overlaps(ys, i)
            wy = _ramp(ys, i)
            below = np.zeros((3, bottom, w), dtype=np.float32) if bottom else None
            side: np.ndarray | None = None  # the previous tile's columns shared with this one
            for j, (x0, x1) in enumerate(xs):
                prot = protected(y0, y1, x0, x1)
                cols = x1 - x0
                left, right = _overlaps(xs, j)
                wx = _ramp(xs, j)
                # weights are 1 away from the overlaps: scale only the bands that blend
                for band in (slice(0, top), slice(rows - bottom, rows)):
                    prot[:, band] *= wy[band, None]
                for band in (slice(0, left), slice(cols - right, cols)):
                    prot[:, :, band] *= wx[band]
                # Shared rows are summed across the strip and written once complete; shared
                # columns are added to the previous tile's; everything else goes straight out.
                if carry is not None:
                    carry[:, :, x0:x1] += prot[:, :top]
                if below is not None:
                    below[:, :, x0:x1] += prot[:, rows - bottom :]
                middle = prot[:, top : rows - bottom]
                if side is not None:
                    middle[:, :, :left] += side
                _write_rows(out, pixels, y0 + top, y1 - bottom, middle[:, :, : cols - right], x0)
                side = middle[:, :, cols - right :] if right else None
            if carry is not None:
                _write_rows(out, pixels, y0, y0 + top, carry, 0)
            carry = below

    def _perturb_working_resolution(
        self,
        pixels: np.ndarray,
        out: np.ndarray,
        strength: float,
        rng: KeySource | None,
        check_time: Callable[[], None],
    ) -> None:
        from PIL import Image

        BOX, BILINEAR = Image.Resampling.BOX, Image.Resampling.BILINEAR
        h, w, c = pixels.shape
        maxval = float(np.iinfo(pixels.dtype).max)
        sh, sw = self._working_size(h, w)
        small = np.empty((3, sh, sw), dtype=np.float32)
        for ch in range(c):  # one channel at a time: never the whole image as float RGB
            plane = np.multiply(pixels[..., ch], np.float32(1.0 / maxval), dtype=np.float32)
            small[ch] = np.asarray(Image.fromarray(plane, mode="F").resize((sw, sh), BOX))
            del plane
        if c == 1:
            small[1:] = small[0]
        check_time()
        key = None if rng is None or self.key is None else self.draw_key(rng, sh, sw)
        delta_small = self.infer(small, strength, key)
        planes = [Image.fromarray(np.ascontiguousarray(delta_small[ch]), mode="F")
                  for ch in range(3)]
        strip = 512
        for y0 in range(0, h, strip):
            y1 = min(h, y0 + strip)
            box = (0.0, y0 * sh / h, float(sw), y1 * sh / h)
            rows = np.stack(
                [np.asarray(p.resize((w, y1 - y0), BILINEAR, box=box))
                 for p in planes]
            )
            _write_rows(out, pixels, y0, y1, rows, 0, add_pixels=True)


def _model_input(
    pixels: np.ndarray, y0: int, y1: int, x0: int, x1: int, ph: int, pw: int
) -> np.ndarray:
    """pixels[y0:y1, x0:x1] as float32 3×ph×pw in [0, 1], padded to ph × pw (reflect).

    Channel by channel (a strided read into a contiguous plane is far cheaper than a transposed
    copy), in row blocks on every core; greyscale is repeated into the model's three channels.
    """
    h, w, c = y1 - y0, x1 - x0, pixels.shape[2]
    x = np.empty((3, ph, pw), dtype=np.float32)
    scale = np.float32(1.0 / np.iinfo(pixels.dtype).max)

    def convert(r0: int, r1: int) -> None:
        for ch in range(c):
            np.multiply(pixels[y0 + r0 : y0 + r1, x0:x1, ch], scale, out=x[ch, r0:r1, :w],
                        dtype=np.float32)  # fmt: skip
        for ch in range(c, 3):
            x[ch, r0:r1, :w] = x[0, r0:r1, :w]

    map_row_blocks(convert, h)
    _pad_in_place(x, h, w)
    return x


def _pad_in_place(x: np.ndarray, h: int, w: int) -> None:
    """Fill x[:, h:, :] and x[:, :, w:] from x[:, :h, :w] as numpy.pad's "reflect" does (its
    "edge" when the image is too small to reflect the padding)."""
    _, ph, pw = x.shape
    reflect = ph - h < h and pw - w < w
    if ph > h:
        x[:, h:, :w] = x[:, _mirror(h, ph - h), :w] if reflect else x[:, h - 1 : h, :w]
    if pw > w:
        x[:, :, w:] = x[:, :, _mirror(w, pw - w)] if reflect else x[:, :, w - 1 : w]


def _mirror(n: int, count: int) -> slice:
    """Indices n−2, n−3, …, n−1−count: the reflection of `count` items past the end at n."""
    stop = n - 2 - count
    return slice(n - 2, stop if stop >= 0 else None, -1)


def _write_rows(
    out: np.ndarray,
    pixels: np.ndarray,
    y0: int,
    y1: int,
    values: np.ndarray,
    x0: int,
    *,
    add_pixels: bool = False,
) -> None:
    """out[y0:y1, x0:x0+n] = round(clip(values · max)) per channel, where `values` (3×rows×n
    float32 in [0, 1] units, consumed) is the protected image, or with `add_pixels` the
    perturbation to add to the pixels. Greyscale receives the luminance. In row blocks that stay
    in cache."""
    maxval = float(np.iinfo(out.dtype).max)
    c = out.shape[2]
    x1 = x0 + values.shape[2]
    if y1 <= y0 or x1 <= x0:
        return

    def write(r0: int, r1: int) -> None:
        block = values[:, r0:r1]
        planes = [np.tensordot(LUMA, block, axes=1)] if c == 1 else block
        for ch, plane in enumerate(planes):
            plane *= maxval
            if add_pixels:
                plane += pixels[y0 + r0 : y0 + r1, x0:x1, ch]
            np.clip(plane, 0, maxval, out=plane)
            # +0.5 then the cast truncates: rounds to nearest
            np.add(plane, 0.5, out=out[y0 + r0 : y0 + r1, x0:x1, ch], casting="unsafe")

    map_row_blocks(write, y1 - y0)


def _spans(n: int, tile: int, step: int) -> list[tuple[int, int]]:
    """Tile spans along one axis: origins on multiples of `step`, the last clipped to n."""
    spans = []
    start = 0
    while True:
        end = min(n, start + tile)
        spans.append((start, end))
        if end >= n:
            return spans
        start += step


def _overlaps(spans: list[tuple[int, int]], i: int) -> tuple[int, int]:
    """Pixels span i shares with its previous and next neighbour."""
    y0, y1 = spans[i]
    before = max(0, spans[i - 1][1] - y0) if i > 0 else 0
    after = max(0, y1 - spans[i + 1][0]) if i + 1 < len(spans) else 0
    return before, after


def _ramp(spans: list[tuple[int, int]], i: int) -> np.ndarray:
    """Blend weights of span i: linear ramps over the overlaps, summing to 1 with neighbours."""
    y0, y1 = spans[i]
    weight = np.ones(y1 - y0, dtype=np.float32)
    if i > 0:
        n = spans[i - 1][1] - y0
        if n > 0:
            weight[:n] = (np.arange(n, dtype=np.float32) + 0.5) / n
    if i + 1 < len(spans):
        n = y1 - spans[i + 1][0]
        if n > 0:
            weight[-n:] = 1.0 - (np.arange(n, dtype=np.float32) + 0.5) / n
    return weight


# Seconds spent inside onnxruntime by this thread (the engine reports it as timings["model"]).
_model_seconds = threading.local()


def take_model_seconds() -> float:
    """Seconds this thread spent in onnxruntime since the last call (and reset)."""
    value = getattr(_model_seconds, "value", 0.0)
    _model_seconds.value = 0.0
    return value


# Seconds spent drawing key fields by this thread (the engine reports it as timings["key"]).
_key_seconds = threading.local()


def take_key_seconds() -> float:
    """Seconds this thread spent drawing key fields since the last call (and reset)."""
    value = getattr(_key_seconds, "value", 0.0)
    _key_seconds.value = 0.0
    return value


_cache: dict[tuple[str, int, int], Model] = {}
_cache_lock = threading.Lock()


def resolve_model_path(spec: str | os.PathLike[str] | None) -> Path:
    """None → `SFUMATO_MODEL` → `DEFAULT_MODEL`; an id is looked up in `models_dir()`."""
    if spec is None or spec == "":
        spec = os.environ.get("SFUMATO_MODEL") or DEFAULT_MODEL
    if spec is None or spec == "":
        raise ModelUnavailable(
            "no protection model is configured",
            f"the trained model is not installed in {models_dir()}; pass --model ID|PATH "
            "or set SFUMATO_MODEL",
        )
    text = os.fspath(spec)
    if text.endswith(".onnx") or os.sep in text or "/" in text:
        return Path(text).expanduser()
    return models_dir() / f"{text}.onnx"


def load_model(
    spec: Model | str | os.PathLike[str] | None = None, *, fresh: bool = False
) -> Model:
    """Load (once per process and file version) the model named by `spec`.

    `fresh`: a new session, neither taken from nor put in the cache (a fresh engine, as a new
    process would have; the efficacy benchmark's replay attack uses it)."""
    if isinstance(spec, Model):
        return spec
    path = resolve_model_path(spec).resolve()
    try:
        stat = path.stat()
    except OSError:
        raise ModelUnavailable(
            f"model file {path} does not exist",
            f"check the id or path; available ids: {', '.join(available_models()) or 'none'}",
        ) from None
    if fresh:
        return _load(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = _load(path)
            _cache[key] = model
        return model


def available_models() -> list[str]:
    """Ids of the models (cards) in `models_dir()`."""
    try:
        return sorted(p.stem for p in models_dir().glob("*.json"))
    except OSError:
        return []


def _load(path: Path) -> Model:
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelUnavailable(
            f"model card {card_path} is missing",
            "every model needs its card <id>.json next to <id>.onnx (see docs/architecture.md)",
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"model card {card_path} is unreadable: {exc}", "restore the card from the release"
        ) from None
    if not isinstance(card, dict):
        raise ModelUnavailable(f"model card {card_path} is not a JSON object", "restore the card")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if str(card.get("sha256", "")).lower() != digest:
        raise ModelUnavailable(
            f"model file {path} does not match the sha256 in its card {card_path.name}",
            "the file is corrupt or was replaced; download or rebuild the model and its card",
        )
    contract = card.get("contract") or {}
    try:
        size_multiple = int(contract.get("size_multiple", 1))
        li = contract.get("large_images") or {"mode": "tile", "tile": 1024, "overlap": 64}
        large = LargeImages(
            mode=str(li.get("mode", "tile")),
            tile=int(li.get("tile", 1024)),
            overlap=int(li.get("overlap", 64)),
            max_side=int(li.get("max_side", 1024)),
        )
        presets = {k: float(v) for k, v in (card.get("presets") or {}).items()}
        cov = card.get("coverage") or {}
        coverage = Coverage(float(cov.get("exponent", 0.0)), float(cov.get("max_factor", 1.0)))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelUnavailable(f"model card {card_path} has an invalid contract: {exc}") from None
    if not (0 <= coverage.exponent <= 2 and 1 <= coverage.max_factor <= 10):
        raise ModelUnavailable(f"model card {card_path} has an invalid coverage: {cov}")
    if size_multiple < 1 or large.mode not in ("tile", "working_resolution") or large.tile < 16:
        raise ModelUnavailable(f"model card {card_path} has an invalid contract: {contract}")
    key = _key_spec(contract.get("key"), size_multiple, card_path)
    presets = {"low": 0.5, "default": 1.0, "high": 1.6} | presets
    session = _session(path, data, key, size_multiple)
    return Model(
        id=str(card.get("id") or path.stem),
        version=str(card.get("version", "")),
        path=path,
        card=card,
        size_multiple=size_multiple,
        large_images=large,
        presets=presets,
        session=session,
        coverage=coverage,
        key=key,
    )


def _key_spec(block: Any, size_multiple: int, card_path: Path) -> KeySpec | None:
    """The card's `contract.key`, validated (None when the card declares no key)."""
    if block is None:
        return None
    fix = (
        'a keyed card declares contract.key = {"input": "key", "channels": C, "scale": s, '
        '"distribution": "standard_normal"} (see docs/architecture.md)'
    )
    if not isinstance(block, dict):
        raise ModelUnavailable(
            f"model card {card_path} has an invalid contract.key: {block!r}", fix
        )
    channels, scale = block.get("channels"), block.get("scale")

    def positive_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    problems = []
    if block.get("input") != "key":
        problems.append(f"input must be \"key\", not {block.get('input')!r}")
    if not positive_int(channels) or channels > MAX_KEY_CHANNELS:
        problems.append(f"channels must be an integer in 1..{MAX_KEY_CHANNELS}, not {channels!r}")
    if not positive_int(scale):
        problems.append(f"scale must be a positive integer, not {scale!r}")
    elif size_multiple % scale:
        problems.append(f"scale {scale} must divide size_multiple {size_multiple}")
    if block.get("distribution") != "standard_normal":
        problems.append(
            f"distribution must be \"standard_normal\", not {block.get('distribution')!r}"
        )
    if problems:
        raise ModelUnavailable(
            f"model card {card_path} has an invalid contract.key: {'; '.join(problems)}", fix
        )
    return KeySpec(input="key", channels=channels, scale=scale)


def _session(path: Path, data: bytes, key: KeySpec | None, size_multiple: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = inference_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # No busy-waiting between ops: on a desktop shared with a browser (or a loaded 2-core box)
    # spinning threads steal the CPU the model needs (measured: −30% CPU, −40% wall time).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelUnavailable(
            f"model file {path} cannot be loaded by onnxruntime: {str(exc)[:200]}",
            "the file is corrupt or not an ONNX model; download or rebuild it",
        ) from None
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if not {"image", "strength"} <= inputs.keys() or "protected" not in outputs:
        raise ModelUnavailable(
            f"model {path} does not follow the contract (inputs {sorted(inputs)}, "
            f"outputs {sorted(outputs)})",
            "a protection model takes `image` and `strength` and returns `protected`",
        )
    unknown = sorted(inputs.keys() - {"image", "strength", "key"})
    if unknown:
        raise ModelUnavailable(
            f"model {path} takes inputs the contract does not define: {unknown}",
            "a protection model takes `image`, `strength` and, if keyed, `key`",
        )
    if key is None and "key" in inputs:
        raise ModelUnavailable(
            f"model {path} takes a secret `key` input but its card does not declare contract.key",
            "a keyed model's card must declare its key (channels, scale); reinstall the model "
            "with its own card",
        )
    if key is not None:
        _check_key_input(path, session, inputs.get("key"), key, size_multiple)
    return session


def _check_key_input(
    path: Path, session: Any, arg: Any, key: KeySpec, size_multiple: int
) -> None:
    """The ONNX's `key` input matches the card: declared shape, then one tiny probe run (the only
    way to see the scale when the spatial sizes are symbolic)."""
    if arg is None:
        raise ModelUnavailable(
            f"model card of {path} declares a `key` input that the ONNX model does not have",
            "the card does not belong to this model file; reinstall both",
        )
    shape = list(arg.shape) if arg.shape is not None else []
    channels = shape[1] if len(shape) == 4 else None
    if arg.type != "tensor(float)" or len(shape) != 4 or (
        isinstance(channels, int) and channels != key.channels
    ):
        raise ModelUnavailable(
            f"model {path}'s `key` input is {arg.type} {shape}, but its card declares float32 "
            f"[N,{key.channels},H/{key.scale},W/{key.scale}]",
            "the card does not belong to this model file; reinstall both",
        )
    side = max(2 * size_multiple, -(-64 // size_multiple) * size_multiple)
    feeds = {
        "image": np.zeros((1, 3, side, side), np.float32),
        "strength": np.asarray(0.0, np.float32),
        "key": np.zeros(key.shape(side, side), np.float32),
    }
    try:
        out = session.run(["protected"], feeds)[0]
        problem = None if out.shape == (1, 3, side, side) else f"it returned {out.shape}"
    except Exception as exc:  # onnxruntime's own exception types
        problem = str(exc)[:200]
    if problem:
        raise ModelUnavailable(
            f"model {path} does not run with the key its card declares ({key.channels} channels "
            f"at 1/{key.scale} resolution, for a {side}×{side} image): {problem}",
            "the card does not belong to this model file; reinstall both",
        )
