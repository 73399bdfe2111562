"""Protection models: model card, sha256 check, one onnxruntime session per model, tiling.

A model is `<id>.onnx` with its card `<id>.json` next to it (docs/architecture.md). The engine asks
a `Model` to perturb an image array; this module pads to the card's size multiple and, for large
images, tiles with overlap (linear blending of the perturbation) or infers at a capped working
resolution and upsamples the perturbation — whichever the card declares. Work is done per tile or
per strip of rows so a 50 MP image never exists as one float array.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perturb.errors import InvalidStrength, ModelUnavailable, ProtectTimeout

# The shipped model's id; set (one line) when the trained model lands in onnx_models/.
DEFAULT_MODEL: str | None = "sfumato-pattern-v2"

MODELS_DIR = Path(__file__).resolve().parent.parent / "onnx_models"
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

    def infer(self, chw: np.ndarray, strength: float) -> np.ndarray:
        """Run the model on one float32 3×H×W array in [0, 1]; returns the perturbation (3×H×W).

        Pads (reflect) to the size multiple and crops back.
        """
        _, h, w = chw.shape
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        x = chw
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "edge"
            x = np.pad(chw, ((0, 0), (0, ph), (0, pw)), mode=mode)
        batch = np.ascontiguousarray(x[None], dtype=np.float32)
        started = time.perf_counter()
        try:
            out = self.session.run(
                ["protected"], {"image": batch, "strength": np.asarray(strength, dtype=np.float32)}
            )[0]
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelUnavailable(
                f"model {self.path} failed while running on a {w}×{h} image: {str(exc)[:200]}",
                "the model file is broken or does not follow the contract; reinstall it",
            ) from None
        _model_seconds.value = getattr(_model_seconds, "value", 0.0) + (
            time.perf_counter() - started
        )
        if out.shape != batch.shape:
            raise ModelUnavailable(
                f"model {self.path} returned shape {out.shape} for input {batch.shape}",
                "the model does not follow the contract (same N×3×H×W out as in)",
            )
        delta = out[0, :, :h, :w]
        delta -= chw
        if not math.isfinite(float(delta.sum(dtype=np.float64))):
            # a broken model must not write NaN or infinities into pixels
            np.nan_to_num(delta, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return delta

    def perturb(
        self, pixels: np.ndarray, strength: float, *, deadline: float | None = None
    ) -> np.ndarray:
        """Perturb an H×W×C (C = 1 or 3) uint8/uint16 array; returns a new array of that dtype.

        Greyscale (C = 1) is fed to the model as RGB and receives the luminance of the delta.
        `deadline` (time.monotonic) is checked between tiles. Work happens in channel-first
        float32 (the model's layout) one tile or strip at a time, in as few passes as possible.
        """
        h, w, c = pixels.shape
        out = np.empty_like(pixels)
        maxval = float(np.iinfo(pixels.dtype).max)
        if strength == 0 or h == 0 or w == 0:
            out[...] = pixels
            return out

        def finish(y0: int, y1: int, delta: np.ndarray) -> None:
            """Write rows y0..y1: round(clip(pixels + delta · max)) — delta is 3×rows×W."""
            d = np.tensordot(LUMA, delta, axes=1)[None] if c == 1 else delta
            d *= maxval
            d += pixels[y0:y1].transpose(2, 0, 1)
            np.clip(d, 0, maxval, out=d)
            d += 0.5  # the cast below truncates: this rounds to nearest
            out[y0:y1] = d.transpose(1, 2, 0)

        def tile_input(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            chw = np.empty((3, y1 - y0, x1 - x0), dtype=np.float32)
            np.multiply(pixels[y0:y1, x0:x1].transpose(2, 0, 1), np.float32(1.0 / maxval), out=chw)
            return chw

        def check_time() -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise ProtectTimeout("protecting the image exceeded its time limit")

        li = self.large_images
        if li.mode == "working_resolution" and max(h, w) > li.max_side:
            self._perturb_working_resolution(pixels, strength, finish, check_time)
        else:
            tile = max(h, w) if li.mode != "tile" else li.tile
            self._perturb_tiled(h, w, tile, li.overlap, strength, tile_input, finish, check_time)
        return out

    def _perturb_tiled(
        self,
        h: int,
        w: int,
        tile: int,
        overlap: int,
        strength: float,
        tile_input: Callable[[int, int, int, int], np.ndarray],
        finish: Callable[[int, int, np.ndarray], None],
        check_time: Callable[[], None],
    ) -> None:
        m = self.size_multiple
        tile = max(m, tile - tile % m)
        overlap = min(overlap, tile // 2)
        step = max(m, (tile - overlap) // m * m)
        if 2 * step < tile:  # at most two tiles may overlap, or the ramps stop summing to 1
            step = -(-tile // (2 * m)) * m
        ys = _spans(h, tile, step)
        xs = _spans(w, tile, step)
        if len(ys) == 1 and len(xs) == 1:  # one tile: no blending, no accumulator
            check_time()
            finish(0, h, self.infer(tile_input(0, h, 0, w), strength))
            return
        carry: np.ndarray | None = None  # accumulated delta of rows shared with the next strip
        for i, (y0, y1) in enumerate(ys):
            acc = np.zeros((3, y1 - y0, w), dtype=np.float32)
            if carry is not None:
                acc[:, : carry.shape[1]] += carry
            wy = _ramp(ys, i)
            top, bottom = _overlaps(ys, i)
            for j, (x0, x1) in enumerate(xs):
                check_time()
                delta = self.infer(tile_input(y0, y1, x0, x1), strength)
                wx = _ramp(xs, j)
                left, right = _overlaps(xs, j)
                # weights are 1 away from the overlaps: scale only the bands that blend
                for rows in (slice(0, top), slice(y1 - y0 - bottom, y1 - y0)):
                    delta[:, rows] *= wy[rows, None]
                for cols in (slice(0, left), slice(x1 - x0 - right, x1 - x0)):
                    delta[:, :, cols] *= wx[cols]
                acc[:, :, x0:x1] += delta
            done = ys[i + 1][0] if i + 1 < len(ys) else y1
            carry = acc[:, done - y0 :] if done < y1 else None
            finish(y0, done, acc[:, : done - y0])

    def _perturb_working_resolution(
        self,
        pixels: np.ndarray,
        strength: float,
        finish: Callable[[int, int, np.ndarray], None],
        check_time: Callable[[], None],
    ) -> None:
        from PIL import Image

        BOX, BILINEAR = Image.Resampling.BOX, Image.Resampling.BILINEAR
        h, w, c = pixels.shape
        maxval = float(np.iinfo(pixels.dtype).max)
        scale = self.large_images.max_side / max(h, w)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = np.empty((3, sh, sw), dtype=np.float32)
        for ch in range(c):  # one channel at a time: never the whole image as float RGB
            plane = np.multiply(pixels[..., ch], np.float32(1.0 / maxval), dtype=np.float32)
            small[ch] = np.asarray(Image.fromarray(plane, mode="F").resize((sw, sh), BOX))
            del plane
        if c == 1:
            small[1:] = small[0]
        check_time()
        delta_small = self.infer(small, strength)
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
            finish(y0, y1, rows)


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


def load_model(spec: Model | str | os.PathLike[str] | None = None) -> Model:
    """Load (once per process and file version) the model named by `spec`."""
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
    presets = {"low": 0.5, "default": 1.0, "high": 1.6} | presets
    session = _session(path, data)
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
    )


def _session(path: Path, data: bytes) -> Any:
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
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if not {"image", "strength"} <= inputs or "protected" not in outputs:
        raise ModelUnavailable(
            f"model {path} does not follow the contract (inputs {sorted(inputs)}, "
            f"outputs {sorted(outputs)})",
            "a protection model takes `image` and `strength` and returns `protected`",
        )
    return session
