"""One image in, its protected bytes out: the proxy's single call into the engine.

Runs inside a worker thread. `body_images` decides what is an image; `refuse_unsupported`
refuses an image format the engine cannot protect (AVIF, JPEG 2000, TIFF, SVG, ...) with
`unsupported-image`. Files whose Sfumato marker matches their pixels pass unchanged, so a
retried upload is not protected twice -- unless they also hold an embedded image or bytes after
their end (`perturb.previews.extra_content`), which the marker does not vouch for: those are
protected again. Engine errors become `Refusal`s. `ImageFinder` takes the same calls without
protecting: the addon first counts the images of a body, then takes a worker only if there are
any.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from perturb.image_kinds import sniff_other
from proxy.uploads.budget import Budget
from proxy.uploads.refusal import (
    PROTECT_COMMAND,
    PROTECT_FIRST,
    Refusal,
    refusal_from_engine_error,
)


def refuse_unsupported(data: bytes) -> None:
    """Raise `unsupported-image` if `data` is an image format the engine cannot protect."""
    other = sniff_other(data)
    if other:
        raise Refusal(
            "unsupported-image",
            f"{other} images cannot be protected in transit",
            f"save it as PNG or JPEG, protect it first ({PROTECT_COMMAND}) and upload the result",
        )

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
    pixels: Budget | None = None  # decoded pixels in flight, shared by all uploads

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Refusal(
                "timeout",
                "protecting the upload took longer than allowed",
                f"retry in a moment, or protect the file before uploading ({PROTECT_COMMAND})",
            )
        return remaining

    def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
        """Protect one image; raise `Refusal` if it cannot be protected."""
        try:
            import perturb
        except ImportError as err:
            raise Refusal(
                "model-error",
                f"the protection engine is not installed ({err})",
                "reinstall Sfumato",
            ) from None
        try:
            # A marker counts only when its pixel digest matches the decoded pixels (a copied
            # or stale marker does not) and the file holds nothing besides them.
            if perturb.already_protected(data) is not None:
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


class ImageFinder:
    """Stands in for the protector when only counting the images of a body."""

    def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
        return ImageResult(data, protected=False, reason="found")


__all__ = ["ImageFinder", "ImageProtector", "ImageResult", "PROTECT_FIRST"]
