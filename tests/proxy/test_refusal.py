"""refusal: the browser's error response and the translation of engine errors."""

from __future__ import annotations

import json

import pytest

import perturb
from proxy.image_protection import ImageProtector, refuse_unsupported
from proxy.uploads.refusal import ERROR_HEADER, Refusal, refusal_from_engine_error, refusal_response


def test_json_response_by_default_with_header_and_cors() -> None:
    refusal = Refusal("signed-payload", "the payload is signed", "protect the file first")
    resp = refusal_response(refusal, site_name="Cara", accept="*/*", origin="https://cara.app")
    assert resp.status_code == 403
    assert resp.headers[ERROR_HEADER] == "signed-payload"
    assert resp.headers["access-control-allow-origin"] == "https://cara.app"
    assert ERROR_HEADER in resp.headers["access-control-expose-headers"]
    doc = json.loads(resp.content)
    assert doc["code"] == "signed-payload" and doc["hint"] == "protect the file first"
    assert "Cara" in doc["message"] and "signed" in doc["message"]


def test_text_response_for_html_accept() -> None:
    resp = refusal_response(
        Refusal("timeout", "took too long", "retry"), site_name="X", accept="text/html"
    )
    assert resp.status_code == 504
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "Sfumato did not send this upload to X: took too long\nWhat to do: retry\n"
    assert "access-control-allow-origin" not in resp.headers


def test_unknown_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        Refusal("whatever", "x")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (perturb.CorruptImage("bad", "re-export"), "corrupt-image"),
        (perturb.NotAnImage("no", "h"), "corrupt-image"),
        (perturb.UnsupportedImage("cmyk", "h"), "unsupported-image"),
        (perturb.ImageTooLarge("big", "h"), "image-too-large"),
        (perturb.ProtectTimeout("slow", "h"), "timeout"),
        (perturb.ModelUnavailable("gone", "h"), "model-error"),
        (perturb.CannotFitLength("fit", "h"), "cannot-fit-length"),
        (RuntimeError("bug"), "engine-error"),
    ],
)
def test_engine_errors_map_to_codes(error: Exception, code: str) -> None:
    refusal = refusal_from_engine_error(error)
    assert refusal.code == code
    assert refusal.message and refusal.hint


def test_other_image_formats_are_refused_with_the_way_out(jpeg) -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 40
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'
    for data, name in ((heic, "HEIC"), (svg, "SVG"), (b"II*\x00\x08\x00\x00\x00", "TIFF")):
        with pytest.raises(Refusal) as info:
            refuse_unsupported(data)
        assert info.value.code == "unsupported-image" and name in info.value.message
        assert "PNG or JPEG" in info.value.hint and "sfumato protect" in info.value.hint
    refuse_unsupported(jpeg)  # protectable: no refusal


def test_busy_refusal_says_when_to_retry() -> None:
    resp = refusal_response(Refusal("busy", "full", "retry", retry_after=5), site_name="X")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert "Retry-After" in resp.headers["access-control-expose-headers"]


def test_expired_deadline_refuses_before_protecting(jpeg) -> None:
    with pytest.raises(Refusal) as info:
        ImageProtector(deadline=0.0)(jpeg)
    assert info.value.code == "timeout"


def test_refusal_hints_name_a_command_that_runs_as_printed() -> None:
    """The hint a refused upload carries names `protect` as this installation runs it."""
    import shlex
    import shutil

    from proxy.cli import command
    from proxy.uploads.refusal import PROTECT_COMMAND, PROTECT_FIRST

    assert command("protect", "FILE") == PROTECT_COMMAND and PROTECT_COMMAND in PROTECT_FIRST
    program = shlex.split(PROTECT_COMMAND)[0]
    assert shutil.which(program), f"{program} is neither on PATH nor an executable file"


def test_engine_hints_name_commands_that_run_as_printed(monkeypatch) -> None:
    """An engine error's hint quoting `sfumato …` is rewritten to this installation's command,
    and a timeout names the proxy's own option instead of the CLI's time limit."""
    from proxy import cli
    from proxy.uploads.refusal import PROTECT_COMMAND

    monkeypatch.setattr(cli, "command_name", lambda: "/opt/sf/.venv/bin/sfumato")
    err = perturb.CorruptImage("the image is damaged", "re-export it, then `sfumato protect` it")
    assert refusal_from_engine_error(err).hint == (
        "re-export it, then `/opt/sf/.venv/bin/sfumato protect` it")
    timeout = refusal_from_engine_error(perturb.ProtectTimeout("too slow"))
    assert timeout.code == "timeout"
    assert "sfumato_timeout" in timeout.hint and PROTECT_COMMAND in timeout.hint
    assert "`sfumato protect`" not in timeout.hint
