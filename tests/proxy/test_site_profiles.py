"""site_profiles: which requests are candidate uploads, host patterns, option parsing."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import site_profiles as sp

PROFILES = {p.id: p for p in sp.BUILTIN_PROFILES}


def _match(site: str, method: str, host: str, path: str, **headers: str):
    return sp.match_upload([PROFILES[site]], method, host, path, headers)


@pytest.mark.parametrize(
    ("site", "method", "host", "path", "headers", "shape"),
    [
        (
            "deviantart",
            "POST",
            "www.deviantart.com",
            "/_puppy/dashared/deviation/submit/upload/deviation",
            {},
            "multipart",
        ),
        (
            "deviantart",
            "POST",
            "www.deviantart.com",
            "/_puppy/dashared/deviation/attachments/add?x=1",
            {},
            "multipart",
        ),
        (
            "deviantart",
            "POST",
            "www.deviantart.com",
            "/api/v1/oauth2/stash/submit",
            {},
            "multipart",
        ),
        ("pixiv", "POST", "www.pixiv.net", "/ajax/work/create/illustration", {}, "multipart"),
        ("tumblr", "POST", "www.tumblr.com", "/api/v2/media/image", {}, "multipart"),
        ("instagram", "POST", "www.instagram.com", "/rupload_igphoto/fb_uploader_123", {}, "raw"),
        ("instagram", "POST", "i.instagram.com", "/rupload_igphoto/fb_uploader_1", {}, "raw"),
        ("instagram", "POST", "www.threads.net", "/rupload_igphoto/fb_uploader_1", {}, "raw"),
        (
            "bluesky",
            "POST",
            "morel.us-east.host.bsky.network",
            "/xrpc/com.atproto.repo.uploadBlob",
            {},
            "raw",
        ),
        (
            "bluesky",
            "POST",
            "pds.example.org",
            "/xrpc/com.atproto.repo.uploadBlob",
            {"origin": "https://bsky.app"},
            "raw",
        ),
        ("x", "POST", "upload.x.com", "/i/media/upload.json?command=INIT", {}, "x_chunked"),
        ("x", "POST", "upload.twitter.com", "/i/media/upload.json", {}, "x_chunked"),
        (
            "cara",
            "PUT",
            "cara-uploads.s3.us-east-1.amazonaws.com",
            "/u/1/art.png",
            {"origin": "https://cara.app"},
            "s3",
        ),
        (
            "cara",
            "PUT",
            "s3.amazonaws.com",
            "/bucket/k.png",
            {"referer": "https://cara.app/post/new"},
            "s3",
        ),
        ("artstation", "POST", "www.artstation.com", "/api/v2/whatever", {}, "generic"),
        (
            "artstation",
            "PUT",
            "bucket.s3.amazonaws.com",
            "/x",
            {"origin": "https://www.artstation.com"},
            "generic",
        ),
    ],
)
def test_upload_requests_are_candidates(site, method, host, path, headers, shape) -> None:
    match = _match(site, method, host, path, **headers)
    assert match is not None and match.shape == shape and match.profile.id == site


@pytest.mark.parametrize(
    ("site", "method", "host", "path", "headers"),
    [
        (
            "deviantart",
            "GET",
            "www.deviantart.com",
            "/_puppy/dashared/deviation/submit/upload/deviation",
            {},
        ),
        ("deviantart", "POST", "www.deviantart.com", "/_puppy/dashared/other", {}),
        (
            "deviantart",
            "POST",
            "evil-deviantart.com",
            "/_puppy/dashared/deviation/submit/upload/deviation",
            {},
        ),
        (
            "deviantart",
            "POST",
            "deviantart.com.evil.org",
            "/_puppy/dashared/deviation/submit/upload/deviation",
            {},
        ),
        ("bluesky", "POST", "pds.example.org", "/xrpc/com.atproto.repo.uploadBlob", {}),
        ("bluesky", "POST", "bsky.app", "/xrpc/com.atproto.repo.uploadBlob", {}),
        ("cara", "PUT", "bucket.s3.amazonaws.com", "/k.png", {}),
        ("cara", "PUT", "bucket.s3.amazonaws.com", "/k.png", {"origin": "https://other.app"}),
        ("cara", "PUT", "cara.app.evil.org", "/k.png", {"origin": "https://cara.app"}),
        ("artstation", "OPTIONS", "www.artstation.com", "/api", {}),
    ],
)
def test_other_requests_are_not_candidates(site, method, host, path, headers) -> None:
    assert _match(site, method, host, path, **headers) is None


def test_host_patterns() -> None:
    assert sp.host_matches("a.b.example.com", ["*.example.com"])
    assert not sp.host_matches("example.com", ["*.example.com"])
    assert sp.host_matches("EXAMPLE.com.", ["example.com"])
    assert sp.host_matches("s3.eu-west-1.amazonaws.com", ["s3.*.amazonaws.com"])
    assert not sp.host_matches("s3.a.b.amazonaws.com", ["s3.*.amazonaws.com"])


def test_allow_hosts_regexes_match_host_and_port_only_for_the_site() -> None:
    patterns = sp.allow_hosts_patterns([PROFILES["deviantart"]])

    def allowed(host_port: str) -> bool:
        return any(re.search(p, host_port, re.I) for p in patterns)

    assert allowed("www.deviantart.com:443") and allowed("deviantart.com:443")
    assert not allowed("deviantart.com.evil.org:443")
    assert not allowed("127.0.0.1:443") and not allowed("example.org:443")


def test_origin_host_prefers_origin_and_ignores_null() -> None:
    assert sp.origin_host({"origin": "https://cara.app"}) == "cara.app"
    assert sp.origin_host({"origin": "null", "referer": "https://bsky.app/x"}) == "bsky.app"
    assert sp.origin_host({"referer": "::not a url::"}) is None


def test_option_parsers() -> None:
    assert sp.parse_site_ids(" x, deviantart,x ,", sp.BUILTIN_IDS) == ["x", "deviantart"]
    with pytest.raises(ValueError, match="unknown site 'nope'"):
        sp.parse_site_ids("nope", sp.BUILTIN_IDS)
    assert sp.parse_strength("HIGH") == "high" and sp.parse_strength("0.7") == 0.7
    for bad in ("strong", "-1", "nan", "11"):
        with pytest.raises(ValueError):
            sp.parse_strength(bad)
    assert sp.parse_site_strengths("x=high, pixiv=0.5", sp.BUILTIN_IDS) == {
        "x": "high",
        "pixiv": 0.5,
    }
    with pytest.raises(ValueError):
        sp.parse_site_strengths("x", sp.BUILTIN_IDS)


def test_custom_sites_become_generic_profiles() -> None:
    (profile,) = sp.parse_custom_sites(
        json.dumps([{"id": "mysite", "name": "My Site", "hosts": ["*.mysite.org", "mysite.org"]}])
    )
    assert profile.custom and profile.hosts == ("*.mysite.org", "mysite.org")
    match = sp.match_upload(
        [profile], "PUT", "cdn.other.net", "/x", {"origin": "https://mysite.org"}
    )
    assert match is not None and match.shape == "generic"
    assert sp.match_upload([profile], "POST", "www.mysite.org", "/up", {}) is not None


@pytest.mark.parametrize(
    "value",
    [
        "{",
        "{}",
        '[{"id": "x", "hosts": ["a.com"]}]',
        '[{"id": "Bad Id", "hosts": ["a.com"]}]',
        '[{"id": "ok", "hosts": []}]',
        '[{"id": "ok", "hosts": ["not a host!"]}]',
        '[{"id": "ok", "hosts": ["a.com"]}, {"id": "ok", "hosts": ["b.com"]}]',
    ],
)
def test_bad_custom_sites_raise(value: str) -> None:
    with pytest.raises(ValueError):
        sp.parse_custom_sites(value)


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=200))
def test_random_custom_site_text_never_crashes(value: str) -> None:
    with contextlib.suppress(ValueError):
        sp.parse_custom_sites(value)


@settings(deadline=None, max_examples=300)
@given(
    st.sampled_from(["GET", "POST", "PUT", "PATCH"]),
    st.text(max_size=60),
    st.text(max_size=80),
    st.dictionaries(st.sampled_from(["origin", "referer"]), st.text(max_size=60)),
)
def test_random_requests_never_crash_matching(method, host, path, headers) -> None:
    sp.match_upload(sp.BUILTIN_PROFILES, method, host, path, headers)
