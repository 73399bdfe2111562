"""Formats: decoding frames and encoding them again per format with the original's fidelity
(JPEG tables and subsampling, PNG bit depth and palette, WebP lossless or lossy, GIF palettes,
animation timing) and metadata. Byte-level container work is in `containers.py`, magic-byte
sniffing in `image_kinds.py`; the engine (`engine.py`) only sees frames.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

from perturb import containers, provenance
from perturb.errors import CorruptImage, ImageTooLarge, ProtectError, UnsupportedImage
from perturb.image_kinds import sniff_format, sniff_other  # noqa: F401 (the engine's sniffers)
from perturb.metadata import Metadata

DEFAULT_MAX_PIXELS = 100_000_000  # per frame, and in total for animations

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
SUPPORTED = tuple(MIME)

WEBP_LOSSY_QUALITY = 90  # WebP does not record its quality; 90 keeps artwork visibly unchanged
SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


@dataclass
class Frame:
    """One frame to protect, with its timing; `pixels16` holds 16-bit colour PNG samples."""

    image: Image.Image
    duration: float | None = None
    disposal: int | None = None
    blend: int | None = None
    pixels16: np.ndarray | None = None  # 16-bit colour PNG: the real pixels (image = high bytes)


def why(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]



# --- decoding ---------------------------------------------------------------------------------


def fidelity(im: Image.Image, raw: bytes | None, fmt: str, n_frames: int) -> dict[str, Any]:
    """Encoding parameters that make the output look like the input (reported, too)."""
    params: dict[str, Any] = {"mode": im.mode}
    if fmt == "JPEG":
        if im.mode == "CMYK":
            raise UnsupportedImage(
                "CMYK JPEGs (print separations) are not supported",
                "export the artwork as an RGB JPEG (the web shows RGB anyway)",
            )
        tables = getattr(im, "quantization", None) or {}
        if tables:
            params["qtables"] = {k: list(v) for k, v in tables.items()}
            params["quality"] = containers.estimate_jpeg_quality(list(tables[min(tables)]))
        else:
            params["quality"] = 90
        sampling = JpegImagePlugin.get_sampling(im) if im.mode == "RGB" else -1
        if sampling in SUBSAMPLING_NAMES:
            params["subsampling"] = SUBSAMPLING_NAMES[sampling]
        params["progressive"] = bool(im.info.get("progressive") or im.info.get("progression"))
    elif fmt == "PNG":
        bad = containers.png_bad_crc(raw) if raw else None
        if bad:
            raise CorruptImage(f"the PNG's {bad.decode('latin-1')} chunk fails its checksum")
        header = containers.png_header(raw) if raw else None
        if header:
            params["bit_depth"] = header[2]
            params["colour_type"] = header[3]
            if header[2] == 16 and header[3] in (2, 4, 6):
                if n_frames > 1:
                    raise UnsupportedImage(
                        "animated 16-bit colour or grey+alpha PNGs are not supported",
                        "export the animation with 8 bits per channel",
                    )
                params["png16"] = True
                for ctype, payload in containers.png_chunks(raw or b""):
                    if ctype == b"tRNS":
                        params["trns"] = payload
        params["animated"] = n_frames > 1
        if n_frames > 1:
            params["loop"] = int(im.info.get("loop", 0))
    elif fmt == "WEBP":
        params["lossless"] = containers.webp_is_lossless(raw) if raw else True
        if not params["lossless"]:
            params["quality"] = WEBP_LOSSY_QUALITY
        params["animated"] = n_frames > 1
        if n_frames > 1:
            params["loop"] = int(im.info.get("loop", 0))
            params["background"] = im.info.get("background")
    elif fmt == "GIF":
        params["animated"] = n_frames > 1
        if "loop" in im.info:
            params["loop"] = int(im.info["loop"])
    return params


def decode_frame(im: Image.Image, index: int, fmt: str, n_frames: int) -> Frame:
    """Frame `index`, decoded; animation frames come composited (as they are displayed)."""
    try:
        if index:
            im.seek(index)
        im.load()
        if n_frames == 1 and fmt != "GIF":
            return Frame(im)
        if fmt == "GIF":
            disposal = getattr(im, "disposal_method", 0)
            rgba = im.convert("RGBA")
            return Frame(rgba, im.info.get("duration"), disposal)
        # APNG and animated WebP: Pillow composites frames onto the canvas.
        frame = im.convert("RGBA") if im.mode not in ("RGB", "RGBA") else im.copy()
        return Frame(frame, im.info.get("duration"), im.info.get("disposal"), im.info.get("blend"))
    except ProtectError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image is too large to decode safely: {exc}") from None
    except Exception as exc:
        raise CorruptImage(f"the {fmt} image data cannot be decoded: {why(exc)}") from None


def decode_png16(raw: bytes, im: Image.Image) -> Frame:
    """16-bit colour or grey+alpha PNG: Pillow keeps only the high byte of each sample. Colour:
    decode twice, the second time unpacking the low bytes (same unfiltering, little-endian
    unpacker), and join. Grey+alpha: one decode unpacking the 4 bytes of each pixel as they
    are (grey high, grey low, alpha high, alpha low)."""
    try:
        tile = im.tile[0]
        if "LA;16B" in str(tile.args):
            im.tile = [tile._replace(args=str(tile.args).replace("LA;16B", "RGBA"))]
            raw_bytes = np.asarray(im)
            pixels = (raw_bytes[..., 0::2].astype(np.uint16) << 8) | raw_bytes[..., 1::2]
            frame_image = Image.fromarray(raw_bytes[..., 0::2], "LA")
            return Frame(frame_image, pixels16=pixels)
        im.load()
        high = np.asarray(im)
        low_image = Image.open(io.BytesIO(raw), formats=["PNG"])
        tile = low_image.tile[0]
        low_image.tile = [tile._replace(args=str(tile.args).replace(";16B", ";16L"))]
        low = np.asarray(low_image)
        if low.shape != high.shape:
            raise ValueError("inconsistent 16-bit decode")
        pixels = (high.astype(np.uint16) << 8) | low
    except ProtectError:
        raise
    except Exception as exc:
        raise CorruptImage(f"the 16-bit PNG image data cannot be decoded: {why(exc)}") from None
    return Frame(im, pixels16=pixels)


def widen_low_bit_grey_key(image: Image.Image, params: dict[str, Any]) -> None:
    """Pillow widens 1/2/4-bit grey samples to 8 bits but leaves a tRNS key in the original
    scale: scale it too, so the written 8-bit file keys the same pixels."""
    depth = params.get("bit_depth")
    key = image.info.get("transparency")
    if params.get("colour_type") == 0 and depth in (1, 2, 4) and isinstance(key, int):
        image.info["transparency"] = min(key, (1 << depth) - 1) * 255 // ((1 << depth) - 1)


# --- encoding ---------------------------------------------------------------------------------


def write_digest(data: bytes, fmt: str, digest: str) -> bytes:
    """`data` with the marker's digest placeholder overwritten by `digest` (same length; the PNG
    chunk holding it gets its CRC recomputed). Exactly one placeholder must be present: a file
    whose own metadata carries our placeholder text is refused rather than marked ambiguously."""
    field = b'sfumato:PixelDigest="'
    old = field + provenance.DIGEST_PLACEHOLDER.encode() + b'"'
    new = field + digest.encode() + b'"'
    if len(new) != len(old):
        raise ValueError("a pixel digest has a fixed length")
    at = data.find(old)
    if at < 0 or data.find(old, at + 1) >= 0:
        raise UnsupportedImage(
            "the file's metadata holds a forged Sfumato marker field",
            "re-export the image without its XMP metadata and try again",
        )
    patched = data[:at] + new + data[at + len(new) :]
    return containers.png_fix_crc(patched, at) if fmt == "PNG" else patched



def _gif_palette_frame(image: Image.Image, transparent_slot: bool) -> Image.Image:
    """An RGBA frame as a P image with an exact palette (its own colours), so GIF encoding adds
    no quantisation error; Pillow's quantiser only when the frame has more colours than a GIF
    palette holds. With `transparent_slot`, index 0 is the transparent entry in every frame
    (Pillow writes one transparency index for the whole animation)."""
    rgba = np.asarray(image.convert("RGBA"))
    opaque = rgba[..., 3] > 0
    colours = rgba[..., :3].astype(np.int32)
    packed = (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]
    unique, inverse = np.unique(packed[opaque], return_inverse=True)
    if len(unique) + transparent_slot > 256:
        return image.convert("RGBA").quantize(256, method=Image.Quantize.FASTOCTREE, dither=0)
    index = np.zeros(rgba.shape[:2], dtype=np.uint8)
    index[opaque] = inverse.ravel() + int(transparent_slot)
    palette = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    if transparent_slot:
        palette = np.vstack([[[0, 0, 0]], palette])
    result = Image.fromarray(index, "P")
    result.putpalette(palette.astype(np.uint8).tobytes(), "RGB")
    if transparent_slot:
        result.info["transparency"] = 0
    return result


def encode(
    frames: list[Frame],
    fmt: str,
    meta: Metadata,
    params: dict[str, Any],
    xmp_args: dict[str, Any],
    *,
    padding: int,
    quality: int | None,
) -> bytes:
    """Encode protected frames like the original: `params` from `fidelity`, `meta` copied, the
    provenance XMP (`xmp_args`) with `padding` bytes of whitespace; `quality` overrides the
    original's (JPEG/WebP quality, PNG zlib level) when a file must shrink to fit a length."""
    packet = provenance.build_xmp(meta.xmp, padding=padding, **xmp_args)
    try:
        if fmt == "JPEG":
            return _encode_jpeg(frames[0].image, meta, params, packet, quality)
        if fmt == "PNG":
            return _encode_png(frames, meta, params, packet, quality)
        if fmt == "WEBP":
            return _encode_webp(frames, meta, params, packet, quality)
        return _encode_gif(frames, meta, params, packet)
    except ProtectError:
        raise
    except Exception as exc:
        raise UnsupportedImage(f"the protected {fmt} cannot be written: {why(exc)}") from None


def _encode_jpeg(
    image: Image.Image, meta: Metadata, params: dict[str, Any], packet: bytes, quality: int | None
) -> bytes:
    kwargs: dict[str, Any] = {"optimize": False, "progressive": params.get("progressive", False)}
    if quality is None and "qtables" in params:
        # The original tables: same quality, exactly (a `quality` would rescale them).
        kwargs["qtables"] = params["qtables"]
    else:
        kwargs["quality"] = quality or params.get("quality", 90)
    sampling = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}.get(params.get("subsampling", ""))
    if sampling is not None:
        kwargs["subsampling"] = sampling
    _common(kwargs, meta)
    # always explicit: Pillow falls back to the frame's own info["comment"], which would bring
    # back a comment the engine dropped (e.g. one holding an unprotected preview)
    kwargs["comment"] = meta.comment or b""
    # The JPEG APP1 segment limit: bulk padding goes into COM segments, the rest into the XMP.
    limit = 65000
    extra: list[bytes] = list(meta.jpeg_segments)
    if len(packet) > limit:
        overflow = len(packet) - limit + 8
        packet = packet.replace(b" " * overflow + b"<?xpacket end", b"<?xpacket end", 1)
        extra += containers.jpeg_comment_padding(overflow)
    kwargs["xmp"] = packet
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return containers.jpeg_insert_segments(buffer.getvalue(), extra)


def _common(kwargs: dict[str, Any], meta: Metadata) -> None:
    if meta.icc_profile:
        kwargs["icc_profile"] = meta.icc_profile
    if meta.exif:
        kwargs["exif"] = meta.exif
    if meta.dpi:
        kwargs["dpi"] = meta.dpi


def _encode_png(
    frames: list[Frame], meta: Metadata, params: dict[str, Any], packet: bytes, level: int | None
) -> bytes:
    info = PngImagePlugin.PngInfo()
    target = _png_written_colour(frames[0])
    inserted = [containers.png_xmp_chunk(packet)]
    for ctype, payload in meta.png_chunks:
        if ctype == b"bKGD":
            if meta.png_source is None:
                continue
            adapted = containers.png_adapt_colour_chunk(ctype, payload, meta.png_source, target)
            if adapted is None:
                continue
            payload = adapted
        if ctype == b"pHYs":  # Pillow writes pHYs only from `dpi`: inserted below
            inserted.append(containers.png_chunk(ctype, payload))
            continue
        info.add(ctype, payload)
    kwargs: dict[str, Any] = {"pnginfo": info, "optimize": False, "compress_level": level or 6}
    _common(kwargs, meta)
    first = frames[0].image
    if first.mode in ("P", "L", "RGB", "I", "I;16", "I;16B") and "transparency" in first.info:
        kwargs["transparency"] = first.info["transparency"]
    if len(frames) > 1:
        kwargs.update(
            save_all=True,
            append_images=[f.image for f in frames[1:]],
            duration=[f.duration or 0 for f in frames],
            loop=params.get("loop", 0),
            # Frames are composited canvases: the original disposal is kept, and each frame is
            # blended as "source" so its pixels (alpha included) replace the canvas exactly.
            disposal=[int(f.disposal or 0) for f in frames],
            blend=0,
            default_image=False,
        )
    if frames[0].pixels16 is not None:
        kwargs.pop("transparency", None)
    buffer = io.BytesIO()
    first.save(buffer, "PNG", **kwargs)
    data = containers.png_insert_before_idat(buffer.getvalue(), b"".join(inserted))
    if frames[0].pixels16 is not None:
        header, idat = containers.png16_image_data(frames[0].pixels16)
        trns = params.get("trns")
        before = [containers.png_chunk(b"tRNS", trns)] if trns else []
        data = containers.png_replace_image_data(data, header, idat, before)
    return data


def _png_written_colour(frame: Frame) -> tuple[int, int]:
    """(bit depth, colour type) the PNG encoder writes for this frame (depth 8 for palettes:
    only the colour type matters for the chunks adapted to it)."""
    if frame.pixels16 is not None:
        return 16, {2: 4, 3: 2, 4: 6}[frame.pixels16.shape[2]]
    return {
        "1": (1, 0), "L": (8, 0), "I;16": (16, 0), "I;16B": (16, 0), "I": (16, 0),
        "LA": (8, 4), "RGB": (8, 2), "RGBA": (8, 6), "P": (8, 3),
    }.get(frame.image.mode, (8, 6))


def _encode_webp(
    frames: list[Frame], meta: Metadata, params: dict[str, Any], packet: bytes, quality: int | None
) -> bytes:
    lossless = bool(params.get("lossless"))
    kwargs: dict[str, Any] = {"lossless": lossless, "method": 4, "exact": True, "xmp": packet}
    kwargs["quality"] = 80 if lossless else (quality or params.get("quality", 90))
    if not lossless:
        kwargs["alpha_quality"] = 100
    _common(kwargs, meta)
    kwargs.pop("dpi", None)
    if len(frames) > 1:
        kwargs.update(
            save_all=True,
            append_images=[f.image for f in frames[1:]],
            duration=[int(f.duration or 0) for f in frames],
            loop=params.get("loop", 0),
            minimize_size=False,
            allow_mixed=False,
        )
        if isinstance(params.get("background"), tuple):
            kwargs["background"] = params["background"]
    buffer = io.BytesIO()
    frames[0].image.save(buffer, "WEBP", **kwargs)
    return buffer.getvalue()


def _encode_gif(
    frames: list[Frame], meta: Metadata, params: dict[str, Any], packet: bytes
) -> bytes:
    kwargs: dict[str, Any] = {"optimize": False}
    # always explicit: Pillow falls back to the frame's own info["comment"], which would bring
    # back a comment the engine dropped (e.g. one holding an unprotected preview)
    kwargs["comment"] = meta.comment or b""
    if "loop" in params:
        kwargs["loop"] = params["loop"]
    transparent = any(f.image.mode == "RGBA" and f.image.getextrema()[3][0] == 0 for f in frames)
    images = [_gif_palette_frame(f.image, transparent) for f in frames]
    if "transparency" in images[0].info:
        kwargs["transparency"] = images[0].info["transparency"]
    if len(frames) > 1:
        kwargs.update(
            save_all=True,
            append_images=images[1:],
            duration=[int(f.duration or 0) for f in frames],
            disposal=[int(f.disposal or 0) for f in frames],
        )
    elif frames[0].duration:
        kwargs["duration"] = int(frames[0].duration)
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", **kwargs)
    data = containers.gif_strip_xmp(buffer.getvalue())
    return containers.gif_insert_extension(data, containers.gif_xmp_extension(packet))

