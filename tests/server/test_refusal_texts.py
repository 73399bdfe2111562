"""Every refusal code the proxy can send (X-Sfumato-Error, also in /v1/activity) has its own text
in the extension, in English and in Spanish, so a Spanish-speaking artist never reads the
backend's English reason for a refusal this version knows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "extension" / "src" / "_locales"


def refusal_codes() -> set[str]:
    from proxy.uploads.refusal import STATUS

    return set(STATUS)


def message_key(code: str) -> str:
    """As extension/src/lib/view_text.js refusalText() names it."""
    return "refusal_" + code.replace("-", "_")


@pytest.mark.parametrize("lang", ["en", "es"])
def test_every_refusal_code_has_a_text(lang: str):
    messages = json.loads((LOCALES / lang / "messages.json").read_text())
    codes = refusal_codes()
    assert len(codes) >= 10
    for code in sorted(codes):
        text = messages.get(message_key(code), {}).get("message", "")
        assert len(text) > 20, f"{lang}: no text for the refusal code {code!r}"
        assert {"en": "Nothing was sent", "es": "No se envió nada"}[lang] in text, code
    # and no text for a code the proxy does not send (a renamed code would go unnoticed)
    extra = {k for k in messages if k.startswith("refusal_")} - {message_key(c) for c in codes}
    assert extra == set()


def test_the_spanish_texts_are_translations():
    en = json.loads((LOCALES / "en" / "messages.json").read_text())
    es = json.loads((LOCALES / "es" / "messages.json").read_text())
    for code in refusal_codes():
        key = message_key(code)
        assert es[key]["message"] != en[key]["message"], code
