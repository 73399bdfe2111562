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


def _match(site: str, host: str, path: str, **headers: str):
    return sp.match_upload([PROFILES[site]], host, path, headers)


@pytest.mark.parametrize(
    ("site", "host", "path", "headers", "endpoint"),
    [
        (
            "deviantart",
            "www.deviantart.com",
            "/_puppy/dashared/deviation/submit/upload/deviation",
            {},
            "/_puppy/dashared/deviation/submit/upload/deviation",
        ),
        (
            "deviantart",
            "www.deviantart.com",
            "/_puppy/dashared/deviation/attachments/add?x=1",
            {},
            "/_puppy/dashared/deviation/attachments/add",
        ),
        (
            "deviantart",
            "www.deviantart.com",
            "/api/v1/oauth2/stash/submit",
            {},
            "/api/v1/oauth2/stash/submit",
        ),
        ("deviantart", "www.deviantart.com", "/_puppy/dashared/other", {}, None),
        ("deviantart", "deviantart.com", "/", {}, None),
        (
            "pixiv",
            "www.pixiv.net",
            "/ajax/work/create/illustration",
            {},
            "/ajax/work/create/illustration",
        ),
        ("tumblr", "www.tumblr.com", "/api/v2/media/image", {}, "/api/v2/media/image"),
        ("instagram", "www.instagram.com", "/rupload_igphoto/fb_123", {}, "/rupload_igphoto/*"),
        ("instagram", "i.instagram.com", "/rupload_igphoto/fb_1", {}, "/rupload_igphoto/*"),
        ("instagram", "www.threads.net", "/rupload_igphoto/fb_1", {}, "/rupload_igphoto/*"),
        (
            "bluesky",
            "morel.us-east.host.bsky.network",
            "/xrpc/com.atproto.repo.uploadBlob",
            {},
            "/xrpc/com.atproto.repo.uploadBlob",
        ),
        (
            "bluesky",
            "pds.example.org",
            "/xrpc/com.atproto.repo.uploadBlob",
            {"origin": "https://bsky.app"},
            "/xrpc/com.atproto.repo.uploadBlob",
        ),
        ("x", "upload.x.com", "/i/media/upload.json?command=INIT", {}, "/i/media/upload.json"),
        ("x", "upload.twitter.com", "/1.1/media/upload.json", {}, "/1.1/media/upload.json"),
        (
            "cara",
            "cara-uploads.s3.us-east-1.amazonaws.com",
            "/u/1/art.png",
            {"origin": "https://cara.app"},
            None,
        ),
        ("cara", "s3.amazonaws.com", "/bucket/k.png", {"referer": "https://cara.app/new"}, None),
        ("artstation", "www.artstation.com", "/api/v2/whatever", {}, None),
        (
            "artstation",
            "bucket.s3.amazonaws.com",
            "/x",
            {"origin": "https://www.artstation.com"},
            None,
        ),
    ],
)
def test_requests_of_a_site_belong_to_it(site, host, path, headers, endpoint) -> None:
    match = _match(site, host, path, **headers)
    assert match is not None and match.profile.id == site
    if endpoint is None:
        assert match.endpoint is None
    else:
        assert match.endpoint is not None and match.endpoint.path == endpoint


@pytest.mark.parametrize(
    ("site", "host", "headers"),
    [
        ("deviantart", "evil-deviantart.com", {}),
        ("deviantart", "deviantart.com.evil.org", {}),
        ("bluesky", "pds.example.org", {}),
        ("cara", "bucket.s3.amazonaws.com", {}),
        ("cara", "bucket.s3.amazonaws.com", {"origin": "https://other.app"}),
        ("cara", "cara.app.evil.org", {"origin": "https://cara.app.evil.org"}),
    ],
)
def test_other_requests_do_not_belong_to_the_site(site, host, headers) -> None:
    assert (
        _match(site, host, "/_puppy/dashared/deviation/submit/upload/deviation", **headers) is None
    )


@pytest.mark.parametrize(
    ("spelling", "routed"),
    [
        ("/rupload_igphoto/x", "/rupload_igphoto/x"),
        ("//rupload_igphoto/x", "/rupload_igphoto/x"),
        ("/Rupload_igphoto/x", "/rupload_igphoto/x"),
        ("/rupload_igphoto%2Fx", "/rupload_igphoto/x"),
        ("/rupload_igphoto%252Fx", "/rupload_igphoto/x"),
        ("/a/./b/../rupload_igphoto/x/", "/a/rupload_igphoto/x"),
        ("/%64eviation;x=1/", "/deviation"),
        ("/a\\b", "/a/b"),
        ("/..;/a", "/a"),
        ("/a?b=/c#d", "/a"),
    ],
)
def test_paths_are_routed_as_servers_do(spelling: str, routed: str) -> None:
    assert sp.route_path(spelling) == routed


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


def test_custom_sites_are_profiles_without_endpoints() -> None:
    (profile,) = sp.parse_custom_sites(
        json.dumps([{"id": "mysite", "name": "My Site", "hosts": ["*.mysite.org", "mysite.org"]}])
    )
    assert profile.custom and profile.hosts == ("*.mysite.org", "mysite.org")
    match = sp.match_upload([profile], "cdn.other.net", "/x", {"origin": "https://mysite.org"})
    assert match is not None and match.endpoint is None
    assert sp.match_upload([profile], "www.mysite.org", "/up", {}) is not None
    assert sp.match_upload([profile], "cdn.other.net", "/x", {}) is None


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
    st.text(max_size=60),
    st.text(max_size=80),
    st.dictionaries(st.sampled_from(["origin", "referer"]), st.text(max_size=60)),
)
def test_random_requests_never_crash_matching(host, path, headers) -> None:
    sp.match_upload(sp.BUILTIN_PROFILES, host, path, headers)
    assert sp.route_path(path).startswith("/")


def test_profiles_name_only_known_fixes_and_plugins() -> None:
    from proxy.addon import Sfumato

    protocols = set(Sfumato().protocols)
    for profile in sp.BUILTIN_PROFILES:
        assert profile.fixes <= sp.FIXES, profile.id
        for endpoint in profile.endpoints:
            assert endpoint.protocol is None or endpoint.protocol in protocols, endpoint
            assert sp.endpoint_for(profile, endpoint.path.replace("*", "x")) == endpoint
