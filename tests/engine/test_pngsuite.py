"""PngSuite conformance: every reference image is protected faithfully, or converted with a note
in the report, or refused with a reason; the corrupt `x*` files are refused; no file is marked
protected with unchanged pixels. Pixels are read back with pypng, a decoder independent of the
Pillow code the engine uses (Pillow reads 16-bit colour as 8 bits and keeps low-bit grey keys
unscaled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import png
import pytest

from perturb import ProtectError, inspect_marker, protect
from perturb.containers import PNG_SIGNATURE, png_chunk, png_chunks, png_header

SUITE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pngsuite"
FILES = sorted(SUITE.glob("*.png")) if SUITE.is_dir() else []
pytestmark = pytest.mark.skipif(
    not FILES, reason=f"PngSuite not found at {SUITE} (the shared data folder beside the checkout)"
)
# Ancillary chunks that must survive, by type (hIST and a suggested PLTE in truecolour files
# describe the old pixels or are advisory: they are dropped, as docs/engine.md says).
# sBIT is dropped too: it declares low bits insignificant, and the perturbation lives in them.
KEPT = {b"bKGD", b"pHYs", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"tEXt", b"zTXt", b"iTXt", b"tIME",
        b"sPLT"}

# A fixed key (reproducible counts): with a fresh one, a 1×1 image of saturated colours can draw
# signs that push every channel out of range, which is correctly refused as "nothing changed".
SEED = 1


def without_sbit(data: bytes) -> bytes:
    """The file without its sBIT chunk (pypng would reduce the samples to the bits it names)."""
    return PNG_SIGNATURE + b"".join(
        png_chunk(ctype, payload) for ctype, payload in png_chunks(data) if ctype != b"sBIT")


def rgba(data: bytes) -> tuple[np.ndarray, int]:
    """RGBA samples (tRNS applied, low-bit grey scaled to its depth's range) and that depth."""
    width, height, rows, info = png.Reader(bytes=without_sbit(data)).asRGBA()
    pixels = np.vstack([np.asarray(row, dtype=np.int64) for row in rows])
    return pixels.reshape(height, width, 4), info["bitdepth"]


def background(data: bytes) -> tuple[float, ...] | None:
    """The bKGD colour as RGB fractions of full scale (palette indices resolved)."""
    reader = png.Reader(bytes=data)
    reader.preamble()
    value = getattr(reader, "background", None)
    if value is None:
        return None
    if reader.colormap:
        value = reader.palette()[value[0]][:3]
        top = 255
    else:
        top = (1 << reader.bitdepth) - 1
    value = tuple(value) * (3 if len(value) == 1 else 1)
    return tuple(round(v / top, 3) for v in value)


def chunk_types(data: bytes) -> set[bytes]:
    return {ctype for ctype, _ in png_chunks(data)}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_pngsuite_file(path: Path, tiny_model: str) -> None:
    data = path.read_bytes()
    if path.name.startswith("x"):
        with pytest.raises(ProtectError) as refused:
            protect(data, model=tiny_model, seed=SEED)
        assert refused.value.message and refused.value.hint
        return
    try:
        out = protect(data, model=tiny_model, seed=SEED)
    except ProtectError as err:  # a refusal must say why
        assert err.message and err.hint
        pytest.fail(f"{path.name} refused: {err}")  # none of the valid files needs refusing
    assert inspect_marker(out.data) is not None  # the marker matches the pixels written
    (w, h, depth, colour), (w2, h2, depth2, colour2) = png_header(data), png_header(out.data)
    assert (w, h) == (w2, h2)
    notes = " ".join(out.report.notes)
    if (depth2, colour2) != (depth, colour):
        # Only conversions that a perturbation needs, each said in the report.
        if colour == 3:
            assert colour2 in (2, 6) and depth2 == 8 and "palette" in notes
        else:
            assert colour == colour2 == 0 and depth < 8 == depth2 and "-bit" in notes
    before, bits = rgba(data)
    after, bits2 = rgba(out.data)
    if bits2 != bits:  # widened: compare on the widened scale
        before = before * ((1 << bits2) - 1) // ((1 << bits) - 1)
    assert np.array_equal(before[..., 3], after[..., 3]), "alpha (tRNS keys included) is exact"
    visible = before[..., 3] > 0
    moved = np.any(before[..., :3] != after[..., :3], axis=2)[visible]
    assert moved.mean() > 0.25, "protected means the visible pixels changed"
    step = 4 * ((1 << bits2) - 1) / 255
    palette_kept = colour == colour2 == 3
    limit = step * (12 if palette_kept else 1) + 1  # a kept palette snaps to nearby entries
    assert np.abs(after[..., :3] - before[..., :3])[visible].max() <= limit
    missing = (chunk_types(data) & KEPT) - chunk_types(out.data)
    assert not missing, f"ancillary chunks dropped: {sorted(missing)}"
    for ctype, payload in png_chunks(data):
        if ctype == b"pHYs":
            assert (b"pHYs", payload) in list(png_chunks(out.data))
    assert background(out.data) == background(data)


def test_summary(tiny_model: str) -> None:
    """The counts the docs quote: every valid file protected, faithfully or with a note."""
    faithful = converted = refused = 0
    for path in FILES:
        if path.name.startswith("x"):
            continue
        data = path.read_bytes()
        try:
            out = protect(data, model=tiny_model, seed=SEED)
        except ProtectError:
            refused += 1
            continue
        if png_header(out.data)[2:] == png_header(data)[2:]:
            faithful += 1
        else:
            assert out.report.notes
            converted += 1
    assert refused == 0
    assert faithful + converted == len([p for p in FILES if not p.name.startswith("x")])
