"""X (Twitter) chunked media uploads: INIT declares `total_bytes`, APPEND carries segments
(multipart `media`, or base64 `media_data`), FINALIZE may carry `original_md5`.

The declared length must hold, and it is declared before any byte is seen. A protected JPEG or
lossy WebP can be re-encoded to fit the original length, but a protected lossless file (PNG,
GIF) is nearly always larger: for those, INIT's `total_bytes` is raised (`declared_total`,
within X's limits) and the protected file is padded inside its format to exactly that length.
APPEND segments of a tracked image are held (answered locally with 204) until the whole file is
in; the last APPEND is then forwarded as segment 0 carrying the entire protected file, produced
at exactly the declared length (`exact_length`), and FINALIZE's `original_md5` is rewritten to
the protected file's MD5. Params may travel in the query string, a form body or multipart
fields; rewrites touch only the changed value.

`XChunkedUploads` is the plug-in the addon's pipeline calls for X's upload endpoints; requests
there that are not a step of this protocol go through the pipeline like any other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, quote

from mitmproxy import http

from perturb.image_kinds import sniff_image
from proxy.image_protection import ImageProtector
from proxy.uploads import content_encoding, multipart
from proxy.uploads.body_reading import too_large
from proxy.uploads.budget import Budget, busy
from proxy.uploads.refusal import Refusal
from proxy.uploads.upload_rewrite import Rewrite, UploadRequest, protect_image

# run(fn, *args): fn(*args, protector) in a protection worker, under the upload's deadline.
Runner = Callable[..., Awaitable[Rewrite]]
INIT_KEY = "sfumato_x_init"

MAX_TRACKED = 256
# X's size limits per media type (bytes); a raised declaration never goes beyond them.
X_LIMITS = {"image/gif": 15 * 1024 * 1024}
X_IMAGE_LIMIT = 5 * 1024 * 1024
# Lossless formats: room for the protected file, which the engine then pads to the exact size.
LOSSLESS = ("image/png", "image/gif")
HEADROOM = 1.5
HEADROOM_MIN = 64 * 1024
TRACK_SECONDS = 30 * 60


class ChunkedUploadError(ValueError):
    """A chunked-upload request that cannot be understood."""


@dataclass
class Step:
    """One request of a chunked upload."""

    command: str
    media_id: str = ""
    total_bytes: int = 0
    media_type: str = ""
    segment_index: int = 0
    segment: bytes = b""
    segment_field: str = ""  # "media" (binary) or "media_data" (base64), if multipart
    segment_part: int = -1
    params: dict[str, str] = field(default_factory=dict)


def _int(params: dict[str, str], name: str) -> int:
    value = params.get(name, "0").strip() or "0"
    if not value.isdigit():
        raise ChunkedUploadError(f"{name} is not a number: {value[:40]!r}")
    return int(value)


def parse_step(path: str, body: bytes, content_type: str) -> Step:
    """Read the command and its params from query, form body or multipart fields."""
    query = path.split("?", 1)[1] if "?" in path else ""
    params = dict(parse_qsl(query, keep_blank_values=True))
    segment = b""
    segment_field = ""
    segment_part = -1
    ct = content_type.lower()
    if ct.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        if "media_data" in params:
            segment_field = "media_data"
            segment = _b64(params.pop("media_data").encode("latin-1"))
    elif ct.startswith("multipart/"):
        try:
            form = multipart.parse(body, content_type)
        except multipart.MultipartError as err:
            raise ChunkedUploadError(f"the upload's multipart body is malformed: {err}") from None
        for index, part in enumerate(form.parts):
            if part.name in ("media", "media_data") and not segment_field:
                segment_field, segment_part = part.name, index
                segment = part.body if part.name == "media" else _b64(part.body)
            elif part.name and part.filename is None and len(part.body) < 4096:
                params.setdefault(part.name, part.body.decode("utf-8", "replace"))
    command = params.get("command", "").upper()
    return Step(
        command=command,
        media_id=params.get("media_id", ""),
        total_bytes=_int(params, "total_bytes") if command == "INIT" else 0,
        media_type=params.get("media_type", "").lower(),
        segment_index=_int(params, "segment_index") if command == "APPEND" else 0,
        segment=segment,
        segment_field=segment_field,
        segment_part=segment_part,
        params=params,
    )


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(re.sub(rb"\s", b"", data), validate=True)
    except (binascii.Error, ValueError):
        raise ChunkedUploadError("media_data is not valid base64") from None


def segment_is_image(step: Step) -> bool:
    return bool(step.segment) and sniff_image(step.segment) is not None


def media_id_from_response(body: bytes) -> str | None:
    """The media id from an INIT response (`media_id_string`, else `media_id`)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("data"), dict):  # v2 API shape
        data = data["data"]
    value = data.get("media_id_string") or data.get("media_id") or data.get("id")
    return str(value) if value is not None else None


def declared_total(media_type: str, total_bytes: int) -> int:
    """The `total_bytes` to declare upstream for an image of `total_bytes` original bytes."""
    if media_type not in LOSSLESS:
        return total_bytes
    limit = X_LIMITS.get(media_type, X_IMAGE_LIMIT)
    wanted = max(int(total_bytes * HEADROOM), total_bytes + HEADROOM_MIN)
    return max(total_bytes, min(wanted, limit))


def init_rewrite(upload: UploadRequest, declared: int) -> Rewrite:
    """INIT with `total_bytes` set to the declared length (nothing else changes)."""
    path, body = _set_param(upload, upload.body, "total_bytes", str(declared))
    return Rewrite(
        body=body if body != upload.body else None,
        path=path if path != upload.path else None,
        shape="x_chunked",
    )


@dataclass
class TrackedUpload:
    """An image upload between INIT and FINALIZE: `total_bytes` is what the client sends,
    `declared_bytes` what X was told (and receives)."""

    total_bytes: int
    media_type: str
    declared_bytes: int = 0
    segments: dict[int, bytes] = field(default_factory=dict)
    protected_md5: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def received(self) -> int:
        return sum(len(s) for s in self.segments.values())

    def add(self, index: int, data: bytes) -> None:
        self.segments[index] = data
        if self.received > self.total_bytes:
            raise ChunkedUploadError(
                f"the upload sent more than the {self.total_bytes} bytes it declared"
            )

    def assemble(self) -> bytes:
        return b"".join(self.segments[i] for i in sorted(self.segments))


class XUploadStore:
    """Tracked uploads by media id; bounded in number and age, their held segments counted in
    the byte budget."""

    def __init__(self, budget: Budget | None = None) -> None:
        self._uploads: dict[str, TrackedUpload] = {}
        self.budget = budget

    def track(
        self, media_id: str, total_bytes: int, media_type: str, declared_bytes: int | None = None
    ) -> None:
        self._expire()
        while len(self._uploads) >= MAX_TRACKED:
            self.pop(next(iter(self._uploads)))
        declared = total_bytes if declared_bytes is None else declared_bytes
        self._uploads[media_id] = TrackedUpload(total_bytes, media_type, declared)

    def get(self, media_id: str) -> TrackedUpload | None:
        self._expire()
        return self._uploads.get(media_id)

    def hold(self, entry: TrackedUpload, index: int, data: bytes) -> None:
        """Keep a segment until the file is complete (raises ChunkedUploadError, Refusal)."""
        if self.budget is not None and not self.budget.try_take(len(data)):
            raise busy(self.budget)
        self._give(len(entry.segments.get(index, b"")))  # a segment sent again replaces it
        entry.add(index, data)  # on error the caller pops the upload, giving back what it holds

    def pop(self, media_id: str) -> TrackedUpload | None:
        entry = self._uploads.pop(media_id, None)
        if entry is not None:
            self._give(entry.received)
            entry.segments.clear()
        return entry

    def __len__(self) -> int:
        return len(self._uploads)

    def _give(self, amount: int) -> None:
        if self.budget is not None:
            self.budget.give(amount)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, u in self._uploads.items() if now - u.started > TRACK_SECONDS]:
            self.pop(key)


def replace_query_param(path: str, name: str, value: str) -> str:
    """The path with query parameter `name` set to `value`; other bytes untouched."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pieces = query.split("&")
    for i, piece in enumerate(pieces):
        if piece.split("=", 1)[0] == name:
            pieces[i] = f"{name}={quote(value, safe='')}"
    return base + "?" + "&".join(pieces)


def replace_form_param(body: bytes, name: str, value: str) -> bytes:
    """A form-urlencoded body with `name` set to `value`; other bytes untouched."""
    pieces = body.split(b"&")
    key = name.encode()
    for i, piece in enumerate(pieces):
        if piece.split(b"=", 1)[0] == key:
            pieces[i] = key + b"=" + quote(value, safe="").encode()
    return b"&".join(pieces)


def _set_param(upload: UploadRequest, body: bytes, name: str, value: str) -> tuple[str, bytes]:
    """Set a param wherever the request carries it (query, form or multipart field)."""
    path = replace_query_param(upload.path, name, value)
    ct = upload.content_type.lower()
    if ct.startswith("application/x-www-form-urlencoded"):
        body = replace_form_param(body, name, value)
    elif ct.startswith("multipart/"):
        form = multipart.parse(body, upload.content_type)
        for index, part in enumerate(form.parts):
            if part.name == name and part.filename is None:
                form = form.with_body(index, value.encode())
        body = form.to_bytes()
    return path, body


def protect_append(
    upload: UploadRequest, step: Step, data: bytes, declared: int, protect: ImageProtector
) -> Rewrite:
    """The last APPEND, rewritten to carry the whole protected file (exactly `declared` bytes)
    as segment 0."""
    result = protect_image(protect, data, declared)
    if len(result.data) != declared:
        # Passed unchanged (already protected), but INIT promised X more bytes: pad, never
        # protect twice.
        padded = pad_to_length(result.data, declared)
        if padded is None:
            raise Refusal(
                "cannot-fit-length",
                f"the file cannot be sent as exactly the {declared} bytes declared to X",
                "retry the upload",
            )
        result = replace(result, data=padded)
    body = upload.body
    encoded = result.data if step.segment_field == "media" else base64.b64encode(result.data)
    if step.segment_part >= 0:
        form = multipart.parse(body, upload.content_type)
        body = form.with_body(step.segment_part, encoded).to_bytes()
    elif step.segment_field == "media_data":
        body = replace_form_param(body, "media_data", encoded.decode())
    path, body = _set_param(upload, body, "segment_index", "0")
    return Rewrite(
        body=body,
        path=path if path != upload.path else None,
        shape="x_chunked",
        outcome="protected" if result.protected else "passed",
        reason=result.reason,
        bytes_in=len(data),
        bytes_out=len(result.data),
        images=1,
        timings=result.timings,
        protected_data=result.data,
    )


def pad_to_length(data: bytes, length: int) -> bytes | None:
    """A PNG or GIF padded to exactly `length` bytes with an ignorable block (a private
    ancillary PNG chunk, a GIF comment), or None if that is impossible for these bytes."""
    pad = length - len(data)
    if pad == 0:
        return data
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82") and pad >= 12:
        payload = b"\0" * (pad - 12)
        chunk = (
            len(payload).to_bytes(4, "big")
            + b"sfPd"
            + payload
            + zlib.crc32(b"sfPd" + payload).to_bytes(4, "big")
        )
        return data[:-12] + chunk + data[-12:]
    if data[:6] in (b"GIF87a", b"GIF89a") and data.endswith(b"\x3b") and pad >= 3 and pad != 4:
        blocks: list[bytes] = []
        remaining = pad - 3  # extension introducer + label + block terminator
        while remaining:
            take = min(256, remaining)  # one sub-block: its size byte plus up to 255 bytes
            if remaining - take == 1:
                take -= 1
            blocks.append(bytes([take - 1]) + b"\0" * (take - 1))
            remaining -= take
        return data[:-1] + b"\x21\xfe" + b"".join(blocks) + b"\x00" + data[-1:]
    return None


def finalize_rewrite(upload: UploadRequest, step: Step, md5_hex: str) -> Rewrite:
    """FINALIZE with `original_md5` (if sent) set to the protected file's MD5."""
    if "original_md5" not in step.params:
        return Rewrite(shape="x_chunked")
    path, body = _set_param(upload, upload.body, "original_md5", md5_hex)
    return Rewrite(
        body=body if body != upload.body else None,
        path=path if path != upload.path else None,
        shape="x_chunked",
    )


def _held_answer(origin: str | None) -> http.Response:
    """The local answer to an APPEND whose segment Sfumato holds. The page calls upload.x.com
    cross-origin: the answer needs CORS headers."""
    headers = {"Cache-Control": "no-store"}
    if origin and origin != "null":
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
    return http.Response.make(204, b"", headers)


class XChunkedUploads:
    """The plug-in for X's INIT/APPEND/FINALIZE endpoints (see the module docstring)."""

    def __init__(self, budget: Budget | None = None) -> None:
        self.uploads = XUploadStore(budget)

    async def request(
        self, flow: http.HTTPFlow, upload: UploadRequest, run: Runner, body_limit: int
    ) -> Rewrite | None:
        """This request's step rewritten, or None if it is not a step Sfumato tracks (the
        pipeline then handles it like any other request). Raises Refusal."""
        codings = content_encoding.codings(upload.headers.get("content-encoding"))
        if codings:
            try:
                body = content_encoding.decode(upload.body, codings, body_limit)
            except content_encoding.EncodingError:
                return None  # the pipeline refuses what it cannot read
            except content_encoding.DecodedTooLarge:
                raise too_large(body_limit, body_limit, what="decompressed upload") from None
            upload = replace(upload, body=body)
        try:
            step = parse_step(upload.path, upload.body, upload.content_type)
        except ChunkedUploadError as err:
            raise Refusal("bad-request", str(err), "retry the upload") from None
        try:
            rewrite = await self._step(flow, upload, step, run, body_limit)
        except ChunkedUploadError as err:
            self.uploads.pop(step.media_id)
            raise Refusal("bad-request", str(err), "retry the upload") from None
        except Refusal:
            self.uploads.pop(step.media_id)
            raise
        if rewrite is not None and rewrite.body is not None and codings:
            rewrite.remove_headers.append("content-encoding")
        return rewrite

    async def _step(
        self, flow: http.HTTPFlow, upload: UploadRequest, step: Step, run: Runner, limit: int
    ) -> Rewrite | None:
        if step.command == "INIT":
            if not step.media_type.startswith("image/"):
                return Rewrite(shape="x_chunked")  # video, ...: not tracked
            if step.total_bytes > limit:
                raise too_large(step.total_bytes, limit)
            declared = declared_total(step.media_type, step.total_bytes)
            flow.metadata[INIT_KEY] = (step, declared)
            # Room for a protected lossless file (padded to exactly this length later).
            return init_rewrite(upload, declared)
        entry = self.uploads.get(step.media_id) if step.media_id else None
        if step.command == "APPEND" and entry is None:
            if step.segment_index == 0 and segment_is_image(step):
                raise Refusal(
                    "unsupported-upload",
                    "this image upload started before Sfumato saw its INIT request",
                    "retry the upload",
                )
            return None  # not an image upload Sfumato tracks (video, ...)
        if step.command == "APPEND" and entry is not None:
            self.uploads.hold(entry, step.segment_index, step.segment)
            if entry.received < entry.total_bytes:
                # Hold the bytes: the site gets the whole protected file in one APPEND later.
                return Rewrite(shape="x_chunked", answer=_held_answer(upload.headers.get("origin")))
            data = entry.assemble()
            rewrite = await run(protect_append, upload, step, data, entry.declared_bytes)
            entry.protected_md5 = hashlib.md5(rewrite.protected_data).hexdigest()
            return rewrite
        if step.command == "FINALIZE" and entry is not None:
            if entry.protected_md5 is None:
                raise Refusal(
                    "unsupported-upload",
                    "the upload was finalized before all of its bytes arrived",
                    "retry the upload",
                )
            self.uploads.pop(step.media_id)
            return finalize_rewrite(upload, step, entry.protected_md5)
        return None  # not a step of a tracked upload

    def wants_response(self, flow: http.HTTPFlow) -> bool:
        """An INIT's answer is read whole (it carries the media id)."""
        return INIT_KEY in flow.metadata

    def response(self, flow: http.HTTPFlow) -> None:
        init = flow.metadata.get(INIT_KEY)
        if init is None or flow.response is None:
            return
        step, declared = init
        media_id = media_id_from_response(flow.response.content or b"")
        if media_id and 200 <= flow.response.status_code < 300:
            self.uploads.track(media_id, step.total_bytes, step.media_type, declared)
