"""What happened to one intercepted upload, for whoever listens (the control API logs these).

The addon calls every callable in `Sfumato.outcome_listeners` with one `Outcome` per request
that belongs to an enabled site and carries (or should carry) image bytes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

OutcomeKind = Literal["protected", "refused", "passed"]


@dataclass(frozen=True)
class Outcome:
    """One upload's fate.

    `outcome` is "protected" (the site received protected images), "refused" (the browser got
    a Sfumato error and the site received nothing) or "passed" (forwarded unchanged, e.g. the
    image already carries the Sfumato marker or the request held no image). `reason` says why in
    words a user can read; `code` is the machine-readable refusal code (also sent in the
    `X-Sfumato-Error` header), empty unless refused.
    """

    site: str
    shape: str
    host: str
    path: str
    outcome: OutcomeKind
    reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    images: int = 0
    method: str = "POST"
    code: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for logs and the control API)."""
        return asdict(self)
