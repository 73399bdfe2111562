"""The XMP marker and the AI-training reservation: written, merged, read back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from perturb import has_ai_reservation, inspect_marker, protect
from perturb.provenance import DMI_PROHIBITED_AIML, build_xmp, check_marker
from tests.engine import samples

EXISTING = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
    b"<dc:creator><rdf:Seq><rdf:li>Ana</rdf:li></rdf:Seq></dc:creator></rdf:Description>"
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)

ids = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None)
@given(ids, st.floats(min_value=0, max_value=100), st.booleans(), st.integers(0, 500))
def test_marker_round_trips(model_id: str, strength: float, reserve: bool, pad: int) -> None:
    packet = build_xmp(None, model_id=model_id, model_version="1.0", strength=strength,
                       date="2026-01-02", ai_reservation=reserve, padding=pad)
    check = check_marker(b"prefix" + packet + b"suffix")
    assert check.status == "no-digest" and inspect_marker(packet) is None  # not an image
    marker = check.marker
    assert marker is not None
    assert marker.model_id == model_id
    assert abs(marker.strength - strength) <= 1e-5 * max(1.0, strength)
    assert marker.date == "2026-01-02"
    assert marker.ai_reservation is reserve
    assert has_ai_reservation(packet) is reserve


def test_merge_keeps_existing_properties_and_replaces_an_old_marker() -> None:
    first = build_xmp(EXISTING, model_id="a", model_version="", strength=1.0, date="d1",
                      ai_reservation=True)
    second = build_xmp(first, model_id="b", model_version="", strength=0.5, date="d2",
                       ai_reservation=True)
    assert b"<rdf:li>Ana</rdf:li>" in second
    assert second.count(b"sfumato:Model=") == 1
    assert second.count(b"plus:DataMining") == 1
    assert check_marker(second).marker.model_id == "b"


def test_an_existing_data_mining_choice_is_left_untouched() -> None:
    allowed = EXISTING.replace(
        b'xmlns:dc="http://purl.org/dc/elements/1.1/"',
        b'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"'
        b' plus:DataMining="http://ns.useplus.org/ldf/vocab/DMI-ALLOWED"',
    )
    merged = build_xmp(allowed, model_id="m", model_version="", strength=1.0, date="d",
                       ai_reservation=True)
    assert merged.count(b"plus:DataMining") == 1
    assert not has_ai_reservation(merged)
    assert check_marker(merged).marker is not None


def test_broken_existing_xmp_is_replaced_by_a_valid_packet() -> None:
    broken = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><unclosed></x:xmpmeta>"
    merged = build_xmp(broken, model_id="m", model_version="", strength=1.0, date="d",
                       ai_reservation=False)
    assert check_marker(merged).marker.model_id == "m"


def test_garbage_has_no_marker() -> None:
    assert inspect_marker(b"") is None
    assert inspect_marker(b"<x:xmpmeta>" * 3) is None
    assert not has_ai_reservation(b"DataMining")


def test_reservation_can_be_turned_off(tiny_model: str) -> None:
    out = protect(samples.jpeg_with_exif_and_icc(), model=tiny_model, ai_reservation=False)
    assert inspect_marker(out.data) is not None
    assert not has_ai_reservation(out.data)
    assert DMI_PROHIBITED_AIML.encode() not in out.data


def test_existing_jpeg_xmp_is_merged(tiny_model: str) -> None:
    from PIL import Image

    data = samples.encode(Image.new("RGB", (16, 16)), "JPEG", xmp=EXISTING)
    out = protect(data, model=tiny_model).data
    assert b"<rdf:li>Ana</rdf:li>" in out
    assert inspect_marker(out).ai_reservation


def test_protecting_twice_keeps_a_single_marker(tiny_model: str) -> None:
    once = protect(samples.rgba_png(), model=tiny_model, strength="low").data
    twice = protect(once, model=tiny_model, strength="high").data
    assert twice.count(b"sfumato:Model=") == 1
    assert inspect_marker(twice).strength == 1.6


def test_adversarial_bodies_are_read_in_linear_time() -> None:
    import time

    body = b"<x:xmpmeta " * 200_000 + b"x" * 1_000_000 + b"</x:xmpmeta>"
    started = time.perf_counter()
    assert inspect_marker(body) is None
    assert not has_ai_reservation(body)
    assert time.perf_counter() - started < 5  # quadratic scanning would take minutes
