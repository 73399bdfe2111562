"""Fail closed: the typed refusal and the error response the browser gets instead of an upload.

When protection is on for a site and an upload cannot be protected, the site must receive
nothing. The browser gets a response that says what happened and what to do (JSON or text
per `Accept`), with the header `X-Sfumato-Error: <code>` so the extension and scripts can tell
a Sfumato refusal from a site error, and CORS headers so the page's script can read it. A refusal
because Sfumato is busy (its memory budget is spent) says when to retry (`Retry-After`).
"""

from __future__ import annotations

import json

from mitmproxy import http

from proxy.cli import command, runnable

ERROR_HEADER = "X-Sfumato-Error"

# Refusal codes and the HTTP status each answers with.
STATUS: dict[str, int] = {
    "corrupt-image": 422,
    "unsupported-image": 415,
    "image-too-large": 413,
    "body-too-large": 413,
    "timeout": 504,
    "busy": 503,
    "model-error": 503,
    "engine-error": 500,
    "cannot-fit-length": 422,
    "signed-payload": 403,
    "unsupported-upload": 403,
    "bad-request": 400,
}

# perturb error class name -> refusal code (by name: the proxy must load without the engine).
ENGINE_ERROR_CODES: dict[str, str] = {
    "EmptyInput": "corrupt-image",
    "NotAnImage": "corrupt-image",
    "CorruptImage": "corrupt-image",
    "UnsupportedImage": "unsupported-image",
    "ImageTooLarge": "image-too-large",
    "ProtectTimeout": "timeout",
    "ModelUnavailable": "model-error",
    "CannotFitLength": "cannot-fit-length",
}

# Every command a refusal names runs as printed in this installation (proxy.cli.command).
PROTECT_COMMAND = command("protect", "FILE")
PROTECT_FIRST = f"protect the file before uploading ({PROTECT_COMMAND}), then upload the result"
# The engine's own timeout hint speaks of "the time limit"; in the proxy that is an option.
TIMEOUT_HINT = ("retry when the machine is less busy, raise the proxy's time limit "
                "(--set sfumato_timeout=SECONDS), or " + PROTECT_FIRST)


class Refusal(Exception):
    """An upload Sfumato will not forward. `message` says what happened, `hint` what to do."""

    def __init__(
        self, code: str, message: str, hint: str = "", *, retry_after: int | None = None
    ) -> None:
        if code not in STATUS:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(f"{message} {hint}".strip())
        self.code = code
        self.message = message
        self.hint = hint
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return STATUS[self.code]


def refusal_from_engine_error(err: BaseException) -> Refusal:
    """Translate an engine error (a `perturb.ProtectError` or anything unexpected)."""
    code = ENGINE_ERROR_CODES.get(type(err).__name__)
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    hint = runnable(getattr(err, "hint", None) or "")
    if code == "timeout":
        hint = TIMEOUT_HINT
    elif code is None and type(err).__module__.startswith("onnxruntime"):
        code = "model-error"
        message = f"the protection model failed: {message}"
        hint = "retry; if it keeps failing, reinstall the model or " + PROTECT_FIRST
    elif code is None:
        code = "engine-error"
        message = f"the protection engine failed: {message}"
        hint = hint or "retry; if it keeps failing, " + PROTECT_FIRST
    return Refusal(code, message, hint)


def _wants_json(accept: str) -> bool:
    accept = accept.lower()
    if "json" in accept:
        return True
    # fetch()/XHR default to */*: scripts parse JSON more easily than text.
    return not ("text/html" in accept or "text/plain" in accept)


def refusal_response(
    refusal: Refusal, *, site_name: str, accept: str = "", origin: str | None = None
) -> http.Response:
    """The response sent to the browser instead of forwarding the upload."""
    headers = {
        ERROR_HEADER: refusal.code,
        "Cache-Control": "no-store",
        "Access-Control-Expose-Headers": ERROR_HEADER,
    }
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(refusal.retry_after)
        headers["Access-Control-Expose-Headers"] += ", Retry-After"
    if origin and origin != "null":
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
    summary = f"Sfumato did not send this upload to {site_name}: {refusal.message}"
    if _wants_json(accept):
        body = json.dumps(
            {
                "error": "sfumato",
                "code": refusal.code,
                "site": site_name,
                "message": summary,
                "hint": refusal.hint,
            },
            ensure_ascii=False,
        ).encode()
        headers["Content-Type"] = "application/json; charset=utf-8"
    else:
        text = summary + ("\nWhat to do: " + refusal.hint if refusal.hint else "") + "\n"
        body = text.encode()
        headers["Content-Type"] = "text/plain; charset=utf-8"
    return http.Response.make(refusal.status, body, headers)
