"""Site profiles: which requests carry artwork uploads, and how the image travels in them.

Profiles are plain data. A profile names the site's own hosts, the other hosts its uploads go
to (an S3 bucket, a Bluesky PDS), and its upload rules (method, path pattern, body shape).
Uploads to another host belong to a site only when the request's Origin/Referer is the site:
the browser sends those, and they are what tells a Cara upload to S3 from any other S3 traffic.

Host patterns: `example.com` is exact; a leading `*.` matches one or more labels
(`*.example.com` matches `a.b.example.com`, not `example.com`); any other `*` matches within one
label (`s3.*.amazonaws.com`). Path patterns are shell globs on the path without the query.

Adding a site is adding one `SiteProfile` to `BUILTIN_PROFILES` (facts in ../shared/docs/SITES.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

Shape = Literal["multipart", "raw", "data_url", "x_chunked", "s3", "generic"]
SHAPES: tuple[str, ...] = ("multipart", "raw", "data_url", "x_chunked", "s3", "generic")
RuleHosts = Literal["site", "upload", "any"]
STRENGTH_PRESETS = ("low", "default", "high")


@dataclass(frozen=True)
class UploadRule:
    """One kind of upload request: where it goes, what it looks like, how the image travels.

    `on` says which hosts the rule applies to: the site's own hosts, its upload hosts, or any
    host. `needs_origin` additionally requires the request's Origin/Referer to be a site host.
    `keep_size`: the site's app already sized a lossy image (JPEG, WebP) for the server's limit,
    so the protected image keeps the original byte count.
    """

    shape: Shape
    path: str = "*"
    methods: tuple[str, ...] = ("POST",)
    on: RuleHosts = "site"
    needs_origin: bool = False
    keep_size: bool = False


@dataclass(frozen=True)
class SiteProfile:
    """A site whose uploads Sfumato protects."""

    id: str
    name: str
    hosts: tuple[str, ...]
    rules: tuple[UploadRule, ...]
    upload_hosts: tuple[str, ...] = ()
    custom: bool = False

    @property
    def intercept_hosts(self) -> tuple[str, ...]:
        """Host patterns whose TLS must be intercepted for this site's uploads."""
        return self.hosts + self.upload_hosts


@dataclass(frozen=True)
class UploadMatch:
    """A request recognised as a candidate upload."""

    profile: SiteProfile
    rule: UploadRule

    @property
    def shape(self) -> Shape:
        return self.rule.shape


_S3_HOSTS = (
    "s3.amazonaws.com",
    "*.s3.amazonaws.com",
    "s3.*.amazonaws.com",
    "*.s3.*.amazonaws.com",
    "s3-*.amazonaws.com",
    "*.s3-*.amazonaws.com",
)


def _generic_rules() -> tuple[UploadRule, ...]:
    """Any image upload to the site itself, or to any host when Origin/Referer is the site."""
    methods = ("POST", "PUT")
    return (
        UploadRule("generic", "*", methods, on="site"),
        UploadRule("generic", "*", methods, on="any", needs_origin=True),
    )


BUILTIN_PROFILES: tuple[SiteProfile, ...] = (
    SiteProfile(
        id="deviantart",
        name="DeviantArt",
        hosts=("deviantart.com", "*.deviantart.com", "sta.sh", "*.sta.sh"),
        rules=(
            UploadRule("multipart", "/_puppy/dashared/deviation/submit/upload/deviation"),
            UploadRule("multipart", "/_puppy/dashared/deviation/attachments/add"),
            UploadRule("multipart", "/api/v1/oauth2/stash/submit"),
        ),
    ),
    SiteProfile(
        id="pixiv",
        name="Pixiv",
        hosts=("pixiv.net", "*.pixiv.net"),
        rules=(UploadRule("multipart", "/ajax/work/create/illustration"),),
    ),
    SiteProfile(
        id="tumblr",
        name="Tumblr",
        hosts=("tumblr.com", "*.tumblr.com"),
        rules=(UploadRule("multipart", "/api/v2/media/image"),),
    ),
    SiteProfile(
        id="instagram",
        name="Instagram / Threads",
        hosts=(
            "instagram.com",
            "*.instagram.com",
            "threads.net",
            "*.threads.net",
            "threads.com",
            "*.threads.com",
        ),
        rules=(UploadRule("raw", "/rupload_igphoto/*"),),
    ),
    SiteProfile(
        id="bluesky",
        name="Bluesky",
        hosts=("bsky.app", "*.bsky.app"),
        upload_hosts=("*.host.bsky.network", "bsky.social"),
        rules=(
            # The app recompresses images to fit the blob size limit: keep_size holds it.
            UploadRule("raw", "/xrpc/com.atproto.repo.uploadBlob", on="upload", keep_size=True),
            # A self-hosted PDS: recognised by the path plus Origin/Referer bsky.app. Its TLS is
            # only intercepted if its host is listed (a custom site or allow_hosts).
            UploadRule(
                "raw",
                "/xrpc/com.atproto.repo.uploadBlob",
                on="any",
                needs_origin=True,
                keep_size=True,
            ),
        ),
    ),
    SiteProfile(
        id="x",
        name="X / Twitter",
        hosts=("x.com", "*.x.com", "twitter.com", "*.twitter.com"),
        rules=(
            UploadRule("x_chunked", "/i/media/upload.json"),
            UploadRule("x_chunked", "/1.1/media/upload.json"),
        ),
    ),
    SiteProfile(
        id="cara",
        name="Cara",
        hosts=("cara.app", "*.cara.app"),
        upload_hosts=_S3_HOSTS,
        rules=(UploadRule("s3", "*", ("PUT", "POST"), on="upload", needs_origin=True),),
    ),
    SiteProfile(
        id="artstation",
        name="ArtStation",
        hosts=("artstation.com", "*.artstation.com"),
        upload_hosts=_S3_HOSTS,
        rules=_generic_rules(),
    ),
)

BUILTIN_IDS: tuple[str, ...] = tuple(p.id for p in BUILTIN_PROFILES)

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HOST_PATTERN_RE = re.compile(r"^(\*\.)?([a-z0-9*-]+\.)*[a-z0-9*-]+$")


@lru_cache(maxsize=1024)
def host_pattern_regex(pattern: str) -> str:
    """The regex (no anchors, no port) equivalent to a host pattern."""
    pattern = pattern.lower()
    prefix = ""
    if pattern.startswith("*."):
        prefix = r"(?:[a-z0-9-]+\.)+"
        pattern = pattern[2:]
    body = r"\.".join(
        "[a-z0-9-]*".join(re.escape(piece) for piece in label.split("*"))
        for label in pattern.split(".")
    )
    return prefix + body


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(f"^{host_pattern_regex(pattern)}$")


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether a host name (no port) matches any of the patterns."""
    host = host.lower().rstrip(".")
    return any(_compiled(p).match(host) for p in patterns)


def allow_hosts_patterns(profiles: Iterable[SiteProfile]) -> list[str]:
    """mitmproxy `allow_hosts` regexes (matched against `host:port`) for these profiles."""
    seen: dict[str, None] = {}
    for profile in profiles:
        for pattern in profile.intercept_hosts:
            seen[f"^{host_pattern_regex(pattern)}:\\d+$"] = None
    return list(seen)


def origin_host(headers: Mapping[str, str]) -> str | None:
    """The host of the page that sent the request (Origin, else Referer), if any."""
    for name in ("origin", "referer"):
        value = headers.get(name)
        if not value or value == "null":
            continue
        try:
            host = urlsplit(value).hostname
        except ValueError:
            continue
        if host:
            return host.lower()
    return None


def _rule_matches(
    profile: SiteProfile, rule: UploadRule, method: str, host: str, path: str, origin: str | None
) -> bool:
    if method.upper() not in rule.methods:
        return False
    if not fnmatchcase(path, rule.path):
        return False
    if rule.on == "site" and not host_matches(host, profile.hosts):
        return False
    if rule.on == "upload" and not host_matches(host, profile.upload_hosts):
        return False
    return not (rule.needs_origin and not (origin and host_matches(origin, profile.hosts)))


def match_upload(
    profiles: Iterable[SiteProfile],
    method: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
) -> UploadMatch | None:
    """The first profile rule that recognises this request as a candidate upload, if any.

    `path` may include a query string; it is ignored for matching.
    """
    path = path.split("?", 1)[0] or "/"
    origin = origin_host(headers)
    for profile in profiles:
        for rule in profile.rules:
            if _rule_matches(profile, rule, method, host, path, origin):
                return UploadMatch(profile, rule)
    return None


def parse_site_ids(value: str, known: Iterable[str]) -> list[str]:
    """Parse `sfumato_sites` ("deviantart,x"); raises ValueError naming an unknown id."""
    known_ids = list(known)
    ids: list[str] = []
    for raw in value.split(","):
        site_id = raw.strip().lower()
        if not site_id:
            continue
        if site_id not in known_ids:
            raise ValueError(f"unknown site {site_id!r}; known sites: {', '.join(known_ids)}")
        if site_id not in ids:
            ids.append(site_id)
    return ids


def parse_strength(value: str) -> str | float:
    """A strength preset name or a non-negative number; raises ValueError otherwise."""
    text = value.strip().lower()
    if text in STRENGTH_PRESETS:
        return text
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"strength {value!r} is not low, default, high or a number") from None
    if not (0.0 <= number <= 10.0):
        raise ValueError(f"strength {value!r} must be between 0 and 10")
    return number


def parse_site_strengths(value: str, known: Iterable[str]) -> dict[str, str | float]:
    """Parse `sfumato_site_strengths` ("x=high,pixiv=0.7"); raises ValueError."""
    known_ids = list(known)
    strengths: dict[str, str | float] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        site_id, sep, strength = item.partition("=")
        site_id = site_id.strip().lower()
        if not sep:
            raise ValueError(f"site strength {item!r} is not of the form site=strength")
        if site_id not in known_ids:
            raise ValueError(f"unknown site {site_id!r} in site strengths")
        strengths[site_id] = parse_strength(strength)
    return strengths


def parse_custom_sites(value: str) -> list[SiteProfile]:
    """Parse `sfumato_custom_sites` (JSON list of {"id", "name", "hosts"}) into generic profiles.

    Raises ValueError with the offending entry.
    """
    if not value.strip():
        return []
    try:
        data = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"custom sites are not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise ValueError("custom sites must be a JSON list of {id, name, hosts}")
    profiles: list[SiteProfile] = []
    seen: set[str] = set(BUILTIN_IDS)
    for entry in data:
        if not isinstance(entry, dict):
            raise ValueError(f"custom site {entry!r} is not an object")
        site_id = entry.get("id")
        if not isinstance(site_id, str) or not _ID_RE.match(site_id):
            raise ValueError(
                f"custom site id {site_id!r} must be lowercase letters, digits, - or _"
            )
        if site_id in seen:
            raise ValueError(f"custom site id {site_id!r} is already used")
        seen.add(site_id)
        name = entry.get("name", site_id)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"custom site {site_id!r}: name must be a non-empty string")
        hosts = entry.get("hosts")
        if not isinstance(hosts, list) or not hosts:
            raise ValueError(f"custom site {site_id!r}: hosts must be a non-empty list")
        clean: list[str] = []
        for host in hosts:
            if not isinstance(host, str) or not _HOST_PATTERN_RE.match(host.strip().lower()):
                raise ValueError(
                    f"custom site {site_id!r}: {host!r} is not a host name or *.pattern"
                )
            clean.append(host.strip().lower())
        profiles.append(
            SiteProfile(
                id=site_id,
                name=name.strip(),
                hosts=tuple(clean),
                rules=_generic_rules(),
                custom=True,
            )
        )
    return profiles
