"""One image in, its protected bytes out: the proxy's single call into the engine.

Runs inside a worker thread. Images are recognised by magic bytes (a declared `image/*` type
also counts, so a corrupt or exotic file declared as an image is refused rather than sent
unprotected). Files that already carry the Sfumato marker pass unchanged, so a retried upload
is not protected twice. Engine errors become `Refusal`s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from proxy.uploads.refusal import PROTECT_FIRST, Refusal, refusal_from_engine_error

# Formats the engine protects, by magic bytes (the engine's own sniff_format is preferred).
_SUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
# Image formats the engine cannot protect: refused, never forwarded unprotected.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_FTYP_IMAGE_BRANDS = {
    b"heic",
    b"heix",
    b"hevc",
    b"heim",
    b"heis",
    b"mif1",
    b"msf1",
    b"avif",
    b"avis",
}


def sniff_supported(data: bytes) -> str | None:
    """The engine-supported image format of these bytes, by magic bytes."""
    try:
        from perturb import sniff_format
    except ImportError:
        sniff_format = None
    if sniff_format is not None:
        try:
            return sniff_format(data)
        except Exception:
            return None
    for magic, name in _SUPPORTED_MAGIC:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def sniff_other_image(data: bytes) -> str | None:
    """An image format the engine cannot protect (HEIC, AVIF, TIFF, ...), by magic bytes."""
    if _looks_like_bmp(data):
        return "BMP"
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _FTYP_IMAGE_BRANDS:
        return "HEIF/AVIF"
    return None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)


def _looks_like_bmp(data: bytes) -> bool:
    # "BM", then size, two reserved zero words, pixel offset, and a known DIB header size:
    # a text field starting with "BM" ("BMX art") must not count as an image.
    if len(data) < 18 or not data.startswith(b"BM") or data[6:10] != b"\0\0\0\0":
        return False
    return int.from_bytes(data[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)


def is_image(data: bytes, declared_type: str | None = None, *, is_file: bool = True) -> bool:
    """Whether bytes should be treated as an image: magic bytes, or a declared image type.

    For a form field that is not a file (`is_file=False`, no declared type) only the formats
    the engine protects count: their magic numbers are long enough not to occur in text.
    """
    if sniff_supported(data):
        return True
    if declared_type and declared_type.strip().lower().startswith("image/"):
        return True
    return is_file and sniff_other_image(data) is not None


@dataclass
class ImageResult:
    """What happened to one image."""

    data: bytes
    protected: bool
    reason: str = ""
    width: int | None = None
    height: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ImageProtector:
    """Protects images with one strength and model, before one deadline (time.monotonic)."""

    strength: str | float = "default"
    model: str | None = None
    deadline: float | None = None

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Refusal(
                "timeout",
                "protecting the upload took longer than allowed",
                "retry in a moment, or protect the file before uploading (sfumato protect FILE)",
            )
        return remaining

    def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
        """Protect one image; raise `Refusal` if it cannot be protected."""
        other = sniff_other_image(data) or ("SVG" if _looks_like_svg(data) else None)
        if other and not sniff_supported(data):
            raise Refusal(
                "unsupported-image",
                f"{other} images cannot be protected",
                "convert it to JPEG, PNG or WebP and upload again",
            )
        try:
            import perturb
        except ImportError as err:
            raise Refusal(
                "model-error",
                f"the protection engine is not installed ({err})",
                "reinstall Sfumato",
            ) from None
        try:
            if perturb.inspect_marker(data) is not None:
                return ImageResult(data, protected=False, reason="already protected by Sfumato")
        except Exception:
            pass  # unreadable marker: let protect() judge the image
        kwargs: dict[str, object] = {"strength": self.strength}
        if self.model:
            kwargs["model"] = self.model
        remaining = self.remaining()
        if remaining is not None:
            kwargs["time_limit"] = remaining
        if exact_length is not None:
            kwargs["exact_length"] = exact_length
        try:
            result = perturb.protect(data, **kwargs)
        except Exception as err:
            raise refusal_from_engine_error(err) from None
        report = result.report
        return ImageResult(
            data=result.data,
            protected=True,
            width=getattr(report, "width", None),
            height=getattr(report, "height", None),
            timings=dict(getattr(report, "timings", {}) or {}),
        )


__all__ = ["ImageProtector", "ImageResult", "is_image", "sniff_supported", "PROTECT_FIRST"]
