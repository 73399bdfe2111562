"""Typed errors of the engine: every failure says what went wrong and what the user can do.

`str(err)` is the message followed by the hint, so a CLI or a log line shows both.
"""

from __future__ import annotations


class ProtectError(Exception):
    """Base of every error `perturb.protect` raises on purpose."""

    default_hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class EmptyInput(ProtectError):
    default_hint = "the file or upload has no content; check that it was saved completely"


class NotAnImage(ProtectError):
    default_hint = "only JPEG, PNG (incl. APNG), WebP and GIF images can be protected"


class CorruptImage(ProtectError):
    default_hint = "the file is truncated or damaged; re-export it from your editor and try again"


class UnsupportedImage(ProtectError):
    default_hint = "export the image as an 8-bit RGB(A) JPEG, PNG, WebP or GIF and try again"


class ImageTooLarge(ProtectError):
    default_hint = "downscale the image, or raise the limit (max_pixels / --max-pixels)"


class ProtectTimeout(ProtectError):
    default_hint = (
        "the image took too long; raise the time limit or protect it with `sfumato protect`"
    )


class ModelUnavailable(ProtectError):
    default_hint = (
        "install the shipped model into onnx_models/, or pass a model with --model PATH "
        "or the SFUMATO_MODEL environment variable"
    )


class CannotFitLength(ProtectError):
    default_hint = "the upload's declared size cannot be met; protect the file before uploading"


class InvalidStrength(ProtectError, ValueError):
    default_hint = 'use "low", "default", "high" or a non-negative number such as 1.0'
