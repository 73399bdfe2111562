"""Sfumato's engine: protect an artwork file against style mimicry, faithfully.

    from perturb import protect
    result = protect(open("art.png", "rb").read(), strength="default")
    open("art.protected.png", "wb").write(result.data)

See docs/engine.md. This package never imports the proxy (or mitmproxy).
"""

from perturb.engine import DEFAULT_MAX_PIXELS, Protected, ProtectReport, protect
from perturb.errors import (
    CannotFitLength,
    CorruptImage,
    EmptyInput,
    ImageTooLarge,
    InvalidStrength,
    ModelUnavailable,
    NotAnImage,
    ProtectError,
    ProtectTimeout,
    UnsupportedImage,
)
from perturb.formats import sniff_format
from perturb.models import DEFAULT_MODEL, Model, load_model
from perturb.provenance import (
    Marker,
    MarkerCheck,
    already_protected,
    check_marker,
    has_ai_reservation,
    inspect_marker,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MODEL",
    "CannotFitLength",
    "CorruptImage",
    "EmptyInput",
    "ImageTooLarge",
    "InvalidStrength",
    "Marker",
    "MarkerCheck",
    "Model",
    "ModelUnavailable",
    "NotAnImage",
    "ProtectError",
    "ProtectReport",
    "ProtectTimeout",
    "Protected",
    "UnsupportedImage",
    "already_protected",
    "check_marker",
    "has_ai_reservation",
    "inspect_marker",
    "load_model",
    "protect",
    "sniff_format",
]
