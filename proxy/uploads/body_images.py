"""Every image in a request body, in whatever shape it travels, handed to `protect`; the body
rebuilt around the results with every other byte kept.

The shapes, searched recursively (each decoded payload is searched again):
- the bytes are an image: by magic bytes, or by a declared image type (so a broken file that
  claims to be an image is refused rather than passed);
- multipart bodies, nested ones too, with parts in `base64` or `quoted-printable` transfer
  encoding;
- form-urlencoded fields, percent-decoded;
- anything else (JSON, text, XML, unknown binary): images in base64, hex, percent-encoding or
  JSON byte arrays, bare or in `data:` URLs (`text_images`); text in UTF-16 or UTF-32 is
  searched as UTF-8 and written back in its encoding (`text_encodings`), and as its bytes are;
- other media (video, audio, PDF, archives; `other_media`) pass whole, unsearched.

Then the safety net: an image signature left in bytes that no shape accounted for -- an image
after the closing boundary, behind junk at the start of a part, inside a binary format Sfumato
does not parse -- refuses the upload, since it cannot be rebuilt protected. So whatever shape a
site's next upload endpoint uses, an image in it is protected or refused.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Callable

from perturb.image_kinds import image_offsets, sniff_image
from proxy.uploads import multipart, text_encodings, text_images
from proxy.uploads.other_media import sniff_other_media
from proxy.uploads.refusal import PROTECT_FIRST, Refusal

# protect(image bytes, whole) -> protected bytes, or the same object if left unchanged.
# `whole`: the image is the entire request body (its byte count may be declared elsewhere).
Protect = Callable[[bytes, bool], bytes]
MAX_DEPTH = 8


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class ImageSearch:
    """One body's search. After `rewrite`, `images` counts the images handed to `protect` and
    `shape` names where they were ("raw", "multipart", "data_url")."""

    def __init__(self, protect: Protect, *, wide_text: bool = True) -> None:
        self.protect = protect
        self.wide_text = wide_text  # read UTF-16/32 text as such (off: its bytes as they are)
        self.images = 0
        self.shape = ""

    def rewrite(
        self, data: bytes, content_type: str | None, *, field: bool = False, depth: int = 0
    ) -> bytes:
        """`data` with every image protected (the same object if nothing changed).

        `field`: the bytes are a form text field (the user's words): only strict image
        signatures count, and no declared type. Raises Refusal.
        """
        if not data:
            return data
        if depth > MAX_DEPTH:
            raise Refusal(
                "unsupported-upload",
                f"the upload nests its content more than {MAX_DEPTH} levels deep",
                PROTECT_FIRST,
            )
        mime = media_type(content_type)
        if sniff_image(data, strict=field) or (mime.startswith("image/") and not field):
            self.images += 1
            self.shape = self.shape or ("raw" if depth == 0 else "")
            return self.protect(data, depth == 0)
        if sniff_other_media(data):
            return data
        unreadable = None
        if mime.startswith("multipart/"):
            try:
                form = multipart.parse(data, content_type or "")
            except multipart.MultipartError as err:
                unreadable = err  # searched as unknown bytes below; the safety net still applies
            else:
                return self._multipart(data, form, depth)
        codec = None if unreadable else self._wide_codec(data, content_type, field, depth)
        if codec is not None:
            return self._wide_text(data, codec, mime, field, depth)
        if mime == "application/x-www-form-urlencoded":
            new, handled = text_images.rewrite_form(
                data, lambda value: self.rewrite(value, None, field=True, depth=depth + 1)
            )
        else:
            try:
                new, handled = text_images.rewrite_text(data, self._decoded_run(depth))
            except text_images.Base64Error as err:
                raise Refusal("corrupt-image", str(err), "re-export the image and retry") from None
        if depth == 0 and self.images and not self.shape:
            self.shape = "data_url"
        _refuse_leftover_images(data, handled, unreadable)
        return new

    def _wide_codec(
        self, data: bytes, content_type: str | None, field: bool, depth: int
    ) -> str | None:
        """The codec to read `data` in if it is UTF-16/32 text, else None (its bytes as they
        are). Bytes that look wide may be ASCII after all (a wrong charset, a mark glued on), so
        both readings are searched; if both find images, the upload is refused."""
        codec = text_encodings.wide_codec(data, content_type) if self.wide_text else None
        if codec is None:
            return None
        if not carries_image(data, content_type, field=field, depth=depth, wide_text=False):
            return codec
        narrow = data.decode(codec, "surrogatepass").encode("utf-8", "surrogatepass")
        if carries_image(narrow, media_type(content_type), field=field, depth=depth):
            raise Refusal(
                "unsupported-upload",
                f"the upload carries images both as ASCII text and as {codec.upper()} text, "
                "and cannot be rebuilt",
                PROTECT_FIRST,
            )
        return None

    def _wide_text(self, data: bytes, codec: str, mime: str, field: bool, depth: int) -> bytes:
        """UTF-16/32 text, searched as UTF-8 and written back in `codec`."""
        images_before = self.images
        narrow = data.decode(codec, "surrogatepass").encode("utf-8", "surrogatepass")
        new = self.rewrite(narrow, mime, field=field, depth=depth + 1)
        if depth == 0 and self.images > images_before and not self.shape:
            self.shape = "data_url"
        _refuse_leftover_images(data, [])  # raw image bytes inside the text
        if new is narrow:
            return data
        return new.decode("utf-8", "surrogatepass").encode(codec, "surrogatepass")

    def _decoded_run(self, depth: int) -> text_images.Transform:
        def transform(decoded: bytes, declared: str | None) -> bytes:
            # A bare run is arbitrary bytes: only strict signatures count inside it.
            return self.rewrite(decoded, declared, field=declared is None, depth=depth + 1)

        return transform

    def _multipart(self, data: bytes, form: multipart.Multipart, depth: int) -> bytes:
        images_before = self.images
        searched = form.body_ranges()
        changed = False
        for index, part in enumerate(form.parts):
            is_file = part.filename is not None or part.content_type is not None
            encoding = (part.header("content-transfer-encoding") or "").strip().lower()
            new = _transfer_decode(part.body, encoding)
            if new is None:  # not a transfer encoding we read, or broken: search the raw bytes
                encoding, new = "", part.body
            decoded = new
            new = self.rewrite(decoded, part.content_type, field=not is_file, depth=depth + 1)
            if new is not decoded:
                try:
                    form = form.with_body(index, _transfer_encode(new, encoding, part.body))
                except multipart.MultipartError as err:  # the new bytes hold the boundary
                    raise Refusal("engine-error", str(err), "retry the upload") from None
                changed = True
        if depth == 0 and self.images > images_before:
            self.shape = "multipart"
        _refuse_leftover_images(data, searched)
        return form.to_bytes() if changed else data


def carries_image(
    data: bytes,
    content_type: str | None,
    *,
    field: bool = False,
    depth: int = 0,
    wide_text: bool = True,
) -> bool:
    """Whether a search of `data` finds an image (or refuses it), without protecting any."""
    search = ImageSearch(lambda image, whole: image, wide_text=wide_text)
    try:
        search.rewrite(data, content_type, field=field, depth=depth + 1)
    except Refusal:
        return True
    return search.images > 0


def _transfer_decode(body: bytes, encoding: str) -> bytes | None:
    if encoding in ("", "7bit", "8bit", "binary"):
        return body
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            return None
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    return None


def _transfer_encode(data: bytes, encoding: str, original: bytes) -> bytes:
    if encoding == "base64":
        newline = original.find(b"\n")
        if newline < 0:
            return base64.b64encode(data)
        width = len(original[:newline].rstrip(b"\r")) or 76
        text = base64.b64encode(data)
        eol = b"\r\n" if original[newline - 1 : newline] == b"\r" else b"\n"
        return eol.join(text[i : i + width] for i in range(0, len(text), width))
    if encoding == "quoted-printable":  # binary: CR and LF encoded, soft breaks as CRLF
        return binascii.b2a_qp(data, quotetabs=True, istext=False).replace(b"=\n", b"=\r\n")
    return data


def _refuse_leftover_images(
    data: bytes, handled: list[tuple[int, int]], unreadable: Exception | None = None
) -> None:
    """Refuse if an image starts anywhere in `data` outside the ranges already searched.
    `unreadable`: why the bytes' declared shape could not be parsed."""
    gap_start = 0
    for start, end in sorted(handled) + [(len(data), len(data))]:
        for offset, name in image_offsets(data, gap_start, start):
            if unreadable is not None:
                raise Refusal(
                    "bad-request",
                    f"the upload's form data could not be read ({unreadable}) and it carries a "
                    f"{name} image, so it was not sent unprotected",
                    "retry the upload; if it keeps failing, " + PROTECT_FIRST,
                )
            raise Refusal(
                "unsupported-upload",
                f"the upload carries a {name} image at byte {offset} of a part Sfumato cannot "
                "rebuild (inside data it does not parse, or outside the form's fields)",
                PROTECT_FIRST,
            )
        gap_start = max(gap_start, end)
