"""The body limit and the byte budget, enforced while mitmproxy reads an upload's body.

mitmproxy buffers a request body whole before the `request` hook, with no per-request limit:
a 300 MB chunked body would be in memory before Sfumato could refuse it. Its own limits do not
fit: `body_size_limit` is global and would also cut large downloads, `stream_large_bodies` would
send the upload to the site unprotected. So this module wraps the one place that sees each chunk
of a buffered request body (`HttpStream.state_consume_request_body`): for a flow that carries a
`BodyGuard`, every chunk is checked against the upload's limit and its share of the byte budget
before it is buffered. A refused upload is answered at once (the browser sees the refusal while
it is still sending); the rest of its body is read and dropped, never buffered, and the site
receives nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from mitmproxy import http
from mitmproxy.proxy.layers.http import (
    HttpResponseHeadersHook,
    HttpStream,
    RequestData,
    RequestEndOfMessage,
)

from proxy.uploads.budget import Reservation, busy
from proxy.uploads.refusal import PROTECT_COMMAND, Refusal

GUARD_KEY = "sfumato_body_guard"
# The budget is taken in steps while a body of unknown length grows.
STEP = 1024 * 1024


def too_large(size: int, limit: int, *, what: str = "upload") -> Refusal:
    return Refusal(
        "body-too-large",
        f"the {what} is over {size} bytes, more than Sfumato's limit of {limit} bytes",
        f"protect the file before uploading ({PROTECT_COMMAND}), or raise sfumato_body_limit "
        "(and sfumato_buffer_budget, if it is smaller)",
    )


@dataclass
class BodyGuard:
    """One upload's body limit and share of the byte budget. `answer(refusal)` builds the
    response the browser gets for a refusal found while reading (and reports the outcome); a
    refusal decided before the body (`refusal` set, `flow.response` set) is sent as it is."""

    limit: int
    reservation: Reservation
    answer: Callable[[Refusal], http.Response]
    refusal: Refusal | None = None
    answered: bool = False

    def admit(self, size: int) -> Refusal | None:
        """May the body hold `size` bytes? Remembers the first refusal."""
        if self.refusal is None:
            if size > self.limit:
                self.refusal = too_large(size, self.limit)
            elif not (
                self.reservation.grow_to(min(-(-size // STEP) * STEP, self.limit))
                or self.reservation.grow_to(size)
            ):
                self.refusal = busy(self.reservation.budget)
        return self.refusal


_consume_buffered = HttpStream.state_consume_request_body


def _consume_guarded(self: HttpStream, event: Any) -> Generator[Any, Any, None]:
    guard: BodyGuard | None = self.flow.metadata.get(GUARD_KEY)
    if guard is None:
        return (yield from _consume_buffered(self, event))
    if guard.answered:  # the refusal was sent: drop the rest of the body
        if isinstance(event, RequestEndOfMessage):
            self.flow.request.timestamp_end = time.time()
            self.client_state = self.state_done
            if self.server_state == self.state_done:
                yield from self.flow_done()
        return None
    if isinstance(event, RequestData):
        refusal = guard.admit(len(self.request_body_buf) + len(event.data))
        if refusal is not None:
            self.request_body_buf.clear()
            guard.answered = True
            if self.flow.response is None:
                self.flow.response = guard.answer(refusal)
            self.flow.response.timestamp_start = time.time()
            yield HttpResponseHeadersHook(self.flow)
            yield from self.send_response()
            return None
    return (yield from _consume_buffered(self, event))


def install() -> None:
    """Route buffered request bodies through the guard (idempotent)."""
    HttpStream.state_consume_request_body = _consume_guarded  # type: ignore[method-assign]
