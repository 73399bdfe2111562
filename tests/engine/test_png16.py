"""16-bit colour PNG stays 16-bit: checked with an independent decoder of our output."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perturb import inspect_marker, protect
from perturb.containers import PNG_SIGNATURE, png_chunk, png_chunks, png_header


def png16(pixels: np.ndarray, extra: list[bytes] = (), filter_type: int = 0) -> bytes:
    h, w, c = pixels.shape
    raw = pixels.astype(">u2").reshape(h, -1).view(np.uint8)
    bpp = 2 * c
    rows = []
    for y in range(h):
        row = raw[y].astype(np.int32)
        if filter_type == 1:  # Sub
            row[bpp:] = (raw[y, bpp:].astype(np.int32) - raw[y, :-bpp]) % 256
        rows.append(bytes([filter_type]) + row.astype(np.uint8).tobytes())
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + b"".join(extra)
            + png_chunk(b"IDAT", zlib.compress(b"".join(rows))) + png_chunk(b"IEND", b""))


def decode_up_filtered(data: bytes) -> np.ndarray:
    """Independent decoder for what the engine writes (every row "Up"-filtered)."""
    w, h, depth, colour = png_header(data)
    assert depth == 16
    c = {2: 3, 6: 4}[colour]
    stream = zlib.decompress(b"".join(p for t, p in png_chunks(data) if t == b"IDAT"))
    rows = np.frombuffer(stream, np.uint8).reshape(h, 1 + w * c * 2)
    assert (rows[:, 0] == 2).all()
    recon = np.cumsum(rows[:, 1:], axis=0, dtype=np.uint8)  # Up: running sum mod 256
    return recon.view(">u2").reshape(h, w, c).astype(np.int64)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=st.integers(1, 40), h=st.integers(1, 30), alpha=st.booleans(), sub=st.booleans(),
       seed=st.integers(0, 100))
def test_sixteen_bit_colour_round_trip(tiny_model, w, h, alpha, sub, seed) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(2000, 63000, (h, w, 4 if alpha else 3)).astype(np.uint16)
    text = png_chunk(b"tEXt", b"Author\x00Ana")
    out = protect(png16(pixels, [text], 1 if sub else 0), model=tiny_model)
    back = decode_up_filtered(out.data)
    diff = back - pixels.astype(np.int64)
    assert np.abs(diff[..., :3]).max() <= 1029  # 4/255 of full scale
    assert np.abs(diff[..., :3]).max() >= 1000  # really perturbed, in 16-bit steps
    if alpha:
        assert (diff[..., 3] == 0).all()
    assert (b"tEXt", b"Author\x00Ana") in list(png_chunks(out.data))
    assert inspect_marker(out.data) is not None


def test_sixteen_bit_colour_key_is_kept(tiny_model) -> None:
    pixels = np.full((16, 16, 3), 30000, np.uint16)
    pixels[4:8, 4:8] = (1000, 2000, 3000)
    trns = png_chunk(b"tRNS", struct.pack(">HHH", 1000, 2000, 3000))
    out = protect(png16(pixels, [trns]), model=tiny_model)
    back = decode_up_filtered(out.data)
    assert (back[4:8, 4:8] == (1000, 2000, 3000)).all()
    keyed = (back == (1000, 2000, 3000)).all(axis=2)
    assert keyed.sum() == 16
    assert (b"tRNS", struct.pack(">HHH", 1000, 2000, 3000)) in list(png_chunks(out.data))
