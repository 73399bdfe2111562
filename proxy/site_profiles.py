"""Site profiles: which sites Sfumato protects, where their uploads go, and what their upload
requests need beyond the one pipeline.

Profiles are plain data. A profile names the site's own hosts, the hosts its uploads go to that
are its own (a Bluesky PDS), storage hosts it shares with the rest of the web (Amazon S3), the
fixes its requests need when a body changes (`FIXES`), and its listed upload endpoints.

Which requests belong to a site: every request to its own hosts and upload hosts; a request to
any other host when its Origin/Referer is one of the site's hosts (the browser sends those: they
tell a Cara upload to S3 from any other S3 traffic). Every such request that carries an image is
protected or refused, whatever its path or method: a new endpoint the site ships tomorrow is
covered. Listed endpoints only add what a site's protocol needs (a plug-in for X's chunked
uploads, Bluesky's byte count) and are matched on the path as servers route it (`route_path`).

Host patterns: `example.com` is exact; a leading `*.` matches one or more labels
(`*.example.com` matches `a.b.example.com`, not `example.com`); any other `*` matches within one
label (`s3.*.amazonaws.com`). Endpoint paths are shell globs on the routed path.

Adding a site is adding one `SiteProfile` to `BUILTIN_PROFILES` (facts in ../shared/docs/SITES.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from urllib.parse import unquote, urlsplit

STRENGTH_PRESETS = ("low", "default", "high")
# Fixes a profile may name (see proxy/uploads/header_fixes.py and signed_upload.py).
FIXES = frozenset({"entity-length", "rupload-params", "resumable-offset", "s3"})


@dataclass(frozen=True)
class Endpoint:
    """A listed upload request: its path pattern and what it needs beyond the pipeline.

    `keep_size`: the site's app already sized a lossy image (JPEG, WebP) for the server's limit,
    so the protected image keeps the original byte count. `protocol`: the plug-in that handles
    a protocol spanning several requests (the addon's `protocols`).
    """

    path: str
    keep_size: bool = False
    protocol: str | None = None


@dataclass(frozen=True)
class SiteProfile:
    """A site whose uploads Sfumato protects."""

    id: str
    name: str
    hosts: tuple[str, ...]
    endpoints: tuple[Endpoint, ...] = ()
    upload_hosts: tuple[str, ...] = ()
    shared_upload_hosts: tuple[str, ...] = ()
    fixes: frozenset[str] = frozenset()
    custom: bool = False

    @property
    def intercept_hosts(self) -> tuple[str, ...]:
        """Host patterns whose TLS must be intercepted for this site's uploads."""
        return self.hosts + self.upload_hosts + self.shared_upload_hosts


@dataclass(frozen=True)
class UploadMatch:
    """A request that belongs to an enabled site; `endpoint` if it is a listed one."""

    profile: SiteProfile
    endpoint: Endpoint | None = None


_S3_HOSTS = (
    "s3.amazonaws.com",
    "*.s3.amazonaws.com",
    "s3.*.amazonaws.com",
    "*.s3.*.amazonaws.com",
    "s3-*.amazonaws.com",
    "*.s3-*.amazonaws.com",
)


BUILTIN_PROFILES: tuple[SiteProfile, ...] = (
    SiteProfile(
        id="deviantart",
        name="DeviantArt",
        hosts=("deviantart.com", "*.deviantart.com", "sta.sh", "*.sta.sh"),
        endpoints=(
            Endpoint("/_puppy/dashared/deviation/submit/upload/deviation"),
            Endpoint("/_puppy/dashared/deviation/attachments/add"),
            Endpoint("/api/v1/oauth2/stash/submit"),
        ),
    ),
    SiteProfile(
        id="pixiv",
        name="Pixiv",
        hosts=("pixiv.net", "*.pixiv.net"),
        endpoints=(Endpoint("/ajax/work/create/illustration"),),
    ),
    SiteProfile(
        id="tumblr",
        name="Tumblr",
        hosts=("tumblr.com", "*.tumblr.com"),
        endpoints=(Endpoint("/api/v2/media/image"),),
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
        endpoints=(Endpoint("/rupload_igphoto/*"),),
        fixes=frozenset({"entity-length", "rupload-params", "resumable-offset"}),
    ),
    SiteProfile(
        id="bluesky",
        name="Bluesky",
        hosts=("bsky.app", "*.bsky.app"),
        # A self-hosted PDS belongs to Bluesky by Origin/Referer bsky.app; its TLS is only
        # intercepted if its host is listed (a custom site or allow_hosts).
        upload_hosts=("*.host.bsky.network", "bsky.social"),
        # The app recompresses images to fit the blob size limit: keep_size holds it.
        endpoints=(Endpoint("/xrpc/com.atproto.repo.uploadBlob", keep_size=True),),
    ),
    SiteProfile(
        id="x",
        name="X / Twitter",
        hosts=("x.com", "*.x.com", "twitter.com", "*.twitter.com"),
        endpoints=(
            Endpoint("/i/media/upload.json", protocol="x-chunked"),
            Endpoint("/1.1/media/upload.json", protocol="x-chunked"),
        ),
    ),
    SiteProfile(
        id="cara",
        name="Cara",
        hosts=("cara.app", "*.cara.app"),
        shared_upload_hosts=_S3_HOSTS,
        fixes=frozenset({"s3"}),
    ),
    SiteProfile(
        id="artstation",
        name="ArtStation",
        hosts=("artstation.com", "*.artstation.com"),
        shared_upload_hosts=_S3_HOSTS,
        fixes=frozenset({"s3"}),
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


def site_of(
    profiles: Iterable[SiteProfile], host: str, headers: Mapping[str, str]
) -> SiteProfile | None:
    """The enabled site a request belongs to: by its destination, else by its Origin/Referer."""
    profiles = list(profiles)
    for profile in profiles:
        if host_matches(host, profile.hosts + profile.upload_hosts):
            return profile
    origin = origin_host(headers)
    if origin is not None:
        for profile in profiles:
            if host_matches(origin, profile.hosts):
                return profile
    return None


_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def route_path(path: str) -> str:
    """The path as a server may route it, for matching endpoints: no query or fragment,
    percent-escapes decoded (repeatedly: some servers decode twice), `\\` as `/`, `;params`
    dropped, `.` and `..` resolved, empty segments and trailing dots dropped, lower case.

    Matching more spellings than one server would is harmless (the pipeline protects every
    image anyway; an endpoint only adds what its protocol needs), matching fewer is not.
    """
    path = path.split("#", 1)[0].split("?", 1)[0]
    for _ in range(3):
        if not _PERCENT.search(path):
            break
        path = unquote(path, errors="replace")
    segments: list[str] = []
    for raw in path.replace("\\", "/").split("/"):
        segment = raw.split(";", 1)[0].strip()
        if segment == "..":
            if segments:
                segments.pop()
        elif segment.rstrip(". "):
            segments.append(segment.rstrip(". "))
    return "/" + "/".join(segments).lower()


def endpoint_for(profile: SiteProfile, path: str) -> Endpoint | None:
    """The profile's listed endpoint this path routes to, if any."""
    routed = route_path(path)
    for endpoint in profile.endpoints:
        if fnmatchcase(routed, route_path(endpoint.path)):
            return endpoint
    return None


def match_upload(
    profiles: Iterable[SiteProfile], host: str, path: str, headers: Mapping[str, str]
) -> UploadMatch | None:
    """The enabled site this request belongs to, and its listed endpoint if any."""
    profile = site_of(profiles, host, headers)
    if profile is None:
        return None
    return UploadMatch(profile, endpoint_for(profile, path))


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
    """Parse `sfumato_custom_sites` (JSON list of {"id", "name", "hosts"}) into profiles: every
    image upload to those hosts, or from their pages, is protected.

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
                fixes=frozenset({"s3"}),
                custom=True,
            )
        )
    return profiles
