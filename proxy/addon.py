"""The Sfumato mitmproxy addon: protect artwork uploads in flight, fail closed.

    mitmdump -s proxy/addon.py --set sfumato_sites=deviantart,instagram

One pipeline for every request to an enabled site, read top to bottom:

1. `requestheaders` -- the host: does the request belong to an enabled site, by its destination
   or, for uploads going to other hosts (S3, a PDS), by its Origin/Referer
   (`site_profiles.match_upload`)? Everything else streams through untouched, and TLS is only
   intercepted for enabled sites' hosts. The body of the site's requests is buffered, any method
   and any path, under the body limit and the byte budget, both enforced while it is read
   (`uploads.body_reading`).
2. `request` -- a listed endpoint's protocol plug-in may take the request (X's chunked uploads,
   `uploads.x_media_upload`). Otherwise the body shape (multipart, raw, form, JSON/text with
   base64 or data: URLs, nested, compressed) is searched for images by magic bytes
   (`uploads.body_images`); only if there are any, a worker protects each and the body is
   rebuilt with the fixes the site's profile names (`uploads.upload_rewrite`).
3. Anything that cannot be protected is refused: the browser gets a clear error
   (`uploads.refusal`), the site receives nothing. Requests without images pass byte for byte.

Every outcome goes to `Sfumato.outcome_listeners`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):
    # Loaded by path (`mitmdump -s proxy/addon.py`): make the repository root importable.
    _root = str(Path(__file__).resolve().parent.parent)
    if _root not in sys.path:
        sys.path.insert(0, _root)

from mitmproxy import ctx, exceptions, http  # noqa: E402
from mitmproxy.addonmanager import Loader  # noqa: E402

from proxy import site_profiles  # noqa: E402
from proxy.image_protection import ImageFinder, ImageProtector  # noqa: E402
from proxy.outcome import Outcome  # noqa: E402
from proxy.site_profiles import SiteProfile, UploadMatch  # noqa: E402
from proxy.uploads import body_reading  # noqa: E402
from proxy.uploads.body_reading import GUARD_KEY, BodyGuard  # noqa: E402
from proxy.uploads.budget import Budget, Reservation  # noqa: E402
from proxy.uploads.refusal import (  # noqa: E402
    PROTECT_COMMAND,
    Refusal,
    refusal_from_engine_error,
    refusal_response,
)
from proxy.uploads.upload_rewrite import (  # noqa: E402
    Rewrite,
    UploadRequest,
    UploadRules,
    rewrite_upload,
)
from proxy.uploads.worker_pool import PoolTimeout, WorkerPool  # noqa: E402
from proxy.uploads.x_media_upload import XChunkedUploads  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_BODY_LIMIT = 64 * 1024 * 1024
DEFAULT_BUFFER_BUDGET = 256 * 1024 * 1024
DEFAULT_PIXEL_BUDGET_MP = 100  # the engine's largest image: every image it accepts fits
DEFAULT_TIMEOUT = 20
DEFAULT_WORKERS = max(1, min(4, (os.cpu_count() or 2) // 2))
# allow_hosts entry that matches no host: with no site enabled, intercept nothing.
MATCH_NOTHING = "(?!)"
STREAM_RESPONSES_OVER = 1024 * 1024
UPLOAD_KEY = "sfumato_upload"

OutcomeListener = Callable[[Outcome], None]


class Sfumato:
    """The addon. `outcome_listeners` receive one `Outcome` per upload to an enabled site."""

    def __init__(self) -> None:
        self.outcome_listeners: list[OutcomeListener] = []
        self.custom_profiles: list[SiteProfile] = []
        self.enabled: list[SiteProfile] = []
        self.strength: str | float = "default"
        self.site_strengths: dict[str, str | float] = {}
        self.pool: WorkerPool | None = None
        self.buffer = Budget(DEFAULT_BUFFER_BUDGET, "upload bytes", "sfumato_buffer_budget")
        self.pixels = Budget(DEFAULT_PIXEL_BUDGET_MP * 10**6, "pixels", "sfumato_pixel_budget")
        # Plug-ins for site protocols that span requests, by `Endpoint.protocol`.
        self.protocols = {"x-chunked": XChunkedUploads(self.buffer)}
        self._own_allow_hosts: list[str] | None = None
        self._user_allow_hosts = False

    # ----------------------------------------------------------------- options

    def load(self, loader: Loader) -> None:
        body_reading.install()
        loader.add_option(
            "sfumato_sites",
            str,
            "",
            "Comma-separated ids of the sites whose uploads Sfumato protects: "
            + ", ".join(site_profiles.BUILTIN_IDS)
            + ", or the id of a custom site.",
        )
        loader.add_option(
            "sfumato_strength",
            str,
            "default",
            "Protection strength: low, default, high, or a number (0 = off, 1 = default).",
        )
        loader.add_option(
            "sfumato_site_strengths",
            str,
            "",
            "Per-site strength overrides, e.g. 'x=high,pixiv=0.7'.",
        )
        loader.add_option(
            "sfumato_custom_sites",
            str,
            "",
            'Custom sites as a JSON list of {"id", "name", "hosts": [...]}: any image upload '
            "to those hosts (or whose Origin/Referer is one of them) is protected once the id "
            "is in sfumato_sites.",
        )
        loader.add_option(
            "sfumato_body_limit",
            int,
            DEFAULT_BODY_LIMIT,
            "Largest request body (bytes) Sfumato reads from an enabled site's pages, also once "
            "decompressed; larger ones are refused while they are read.",
        )
        loader.add_option(
            "sfumato_buffer_budget",
            int,
            DEFAULT_BUFFER_BUDGET,
            "Most upload bytes Sfumato holds in memory at once, over all uploads (bodies being "
            "read and protected, X segments held). An upload that does not fit is refused at "
            "once with 503 and Retry-After.",
        )
        loader.add_option(
            "sfumato_pixel_budget",
            int,
            DEFAULT_PIXEL_BUDGET_MP,
            "Most decoded image pixels (megapixels, all frames) being protected at once. An "
            "image waits for room until its timeout, then gets 503 and Retry-After; a larger "
            "image is refused.",
        )
        loader.add_option(
            "sfumato_timeout",
            int,
            DEFAULT_TIMEOUT,
            "Seconds one upload may take to protect (waiting for a worker included) before it "
            "is refused.",
        )
        loader.add_option(
            "sfumato_workers",
            int,
            DEFAULT_WORKERS,
            "How many uploads are protected at the same time (CPU threads).",
        )
        loader.add_option(
            "sfumato_model",
            str,
            "",
            "Protection model: a model id or a path to an .onnx file (empty: the shipped "
            "default model, or $SFUMATO_MODEL).",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        try:
            if "sfumato_custom_sites" in updated:
                self.custom_profiles = site_profiles.parse_custom_sites(opts.sfumato_custom_sites)
            known = {p.id: p for p in self.all_profiles}
            if updated & {"sfumato_sites", "sfumato_custom_sites"}:
                ids = site_profiles.parse_site_ids(opts.sfumato_sites, known)
                self.enabled = [known[i] for i in ids]
            if "sfumato_strength" in updated:
                self.strength = site_profiles.parse_strength(opts.sfumato_strength)
            if updated & {"sfumato_site_strengths", "sfumato_custom_sites"}:
                self.site_strengths = site_profiles.parse_site_strengths(
                    opts.sfumato_site_strengths, known
                )
        except ValueError as err:
            raise exceptions.OptionsError(str(err)) from None
        if "sfumato_body_limit" in updated and opts.sfumato_body_limit < 1:
            raise exceptions.OptionsError(
                f"sfumato_body_limit must be a positive number of bytes, "
                f"not {opts.sfumato_body_limit}"
            )
        if "sfumato_buffer_budget" in updated:
            if opts.sfumato_buffer_budget < 1024 * 1024:
                raise exceptions.OptionsError(
                    "sfumato_buffer_budget must be at least 1 MiB (1048576 bytes), not "
                    f"{opts.sfumato_buffer_budget}"
                )
            self.buffer.limit = opts.sfumato_buffer_budget
        if "sfumato_pixel_budget" in updated:
            if opts.sfumato_pixel_budget < 1:
                raise exceptions.OptionsError(
                    f"sfumato_pixel_budget must be at least 1 megapixel, not "
                    f"{opts.sfumato_pixel_budget}"
                )
            self.pixels.limit = opts.sfumato_pixel_budget * 10**6
        if "sfumato_timeout" in updated and opts.sfumato_timeout < 1:
            raise exceptions.OptionsError(
                f"sfumato_timeout must be at least 1 second, not {opts.sfumato_timeout}"
            )
        if "sfumato_workers" in updated:
            if not 1 <= opts.sfumato_workers <= 64:
                raise exceptions.OptionsError(
                    f"sfumato_workers must be between 1 and 64, not {opts.sfumato_workers}"
                )
            if self.pool is None or self.pool.workers != opts.sfumato_workers:
                old, self.pool = self.pool, WorkerPool(opts.sfumato_workers)
                if old is not None:
                    old.shutdown()
        if "sfumato_model" in updated:
            self._check_model(opts.sfumato_model)
        if self.enabled and getattr(opts, "stream_large_bodies", None):
            # mitmproxy switches a request to streaming while reading its body once it grows
            # past stream_large_bodies -- after every hook: an upload would reach the site
            # unprotected. Fail closed at configuration time.
            raise exceptions.OptionsError(
                "stream_large_bodies cannot be used while Sfumato protects sites: large uploads "
                "would be streamed to the site unprotected. Unset stream_large_bodies (Sfumato "
                "streams everything that is not an upload by itself)."
            )
        self._narrow_allow_hosts(updated)

    def _check_model(self, spec: str) -> None:
        """An explicit model that does not exist is an option error; a missing default model is
        only warned about (every upload would be refused until one is installed)."""
        try:
            from perturb.models import resolve_model_path

            path = resolve_model_path(spec or None)
        except ImportError:
            return
        except Exception as err:  # no default model configured
            log.warning("sfumato: %s; uploads to enabled sites will be refused", err)
            return
        if not path.is_file():
            if spec:
                raise exceptions.OptionsError(f"sfumato_model {spec!r}: {path} does not exist")
            log.warning(
                "sfumato: the default model %s is not installed; uploads to enabled sites will "
                "be refused until it is (or set sfumato_model)",
                path,
            )

    def _narrow_allow_hosts(self, updated: set[str]) -> None:
        """Intercept TLS only for enabled sites, unless the user chose allow/ignore hosts."""
        opts = ctx.options
        if not hasattr(opts, "allow_hosts"):
            return
        current = list(opts.allow_hosts)
        if "allow_hosts" in updated and current != self._own_allow_hosts:
            self._user_allow_hosts = bool(current)
            if self._user_allow_hosts:
                self._own_allow_hosts = None
        if self._user_allow_hosts or list(getattr(opts, "ignore_hosts", [])):
            return
        wanted = site_profiles.allow_hosts_patterns(self.enabled) or [MATCH_NOTHING]
        if wanted != current:
            self._own_allow_hosts = wanted
            opts.update(allow_hosts=wanted)
        else:
            self._own_allow_hosts = current

    def done(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    @property
    def all_profiles(self) -> list[SiteProfile]:
        return list(site_profiles.BUILTIN_PROFILES) + self.custom_profiles

    # ------------------------------------------------------------------- hooks

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        request = flow.request
        match = site_profiles.match_upload(
            self.enabled, request.pretty_host, request.path, request.headers
        )
        if match is None:
            request.stream = True
            return
        flow.metadata[UPLOAD_KEY] = match
        # Buffer it, even if another addon (e.g. mitmproxy's stream_large_bodies) chose to
        # stream it: a streamed upload would reach the site unprotected.
        request.stream = False
        reservation = Reservation(self.buffer)
        weakref.finalize(flow, reservation.release)  # also given back in response/error
        guard = BodyGuard(self._body_limit(), reservation, lambda r: self._answer(flow, match, r))
        flow.metadata[GUARD_KEY] = guard
        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            refusal = guard.admit(int(declared))
            if refusal is not None:  # its body is dropped as it arrives
                flow.response = self._answer(flow, match, refusal)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        match: UploadMatch | None = flow.metadata.get(UPLOAD_KEY)
        if match is None:
            return
        upload = UploadRequest.from_flow(flow.request)
        try:
            rewrite = await self._rewrite(flow, match, upload)
            if rewrite is not None:
                self._apply(flow, match, rewrite)
        except Refusal as refusal:
            flow.response = self._answer(flow, match, refusal)
        except Exception as err:
            # Fail closed: a bug must never let an enabled site's upload through unprotected
            # (mitmproxy would log a hook's exception and forward the request).
            log.exception("sfumato: handling an upload failed")
            flow.response = self._answer(flow, match, refusal_from_engine_error(err))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # Responses are never rewritten: stream large ones (downloads stay fast and unbuffered).
        # Small ones are left to mitmproxy's default; a plug-in may need to read one whole.
        if flow.response is None or any(p.wants_response(flow) for p in self.protocols.values()):
            return
        declared = flow.response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > STREAM_RESPONSES_OVER:
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        for protocol in self.protocols.values():
            protocol.response(flow)
        self._release(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._release(flow)

    # --------------------------------------------------------------- the pipeline

    async def _rewrite(
        self, flow: http.HTTPFlow, match: UploadMatch, upload: UploadRequest
    ) -> Rewrite | None:
        """The request rewritten: by its protocol's plug-in, else by the one pipeline."""
        endpoint = match.endpoint
        protocol = self.protocols.get(endpoint.protocol or "") if endpoint else None
        if protocol is not None:
            run = partial(self._in_pool, match.profile)
            rewrite = await protocol.request(flow, upload, run, self._body_limit())
            if rewrite is not None:
                return rewrite
        if not upload.body:
            return None
        rules = UploadRules(
            fixes=match.profile.fixes,
            keep_size=bool(endpoint and endpoint.keep_size),
            report_empty=endpoint is not None,
            body_limit=self._body_limit(),
        )
        # Find the images first (no worker taken, nothing decoded): most requests have none.
        found = await asyncio.to_thread(rewrite_upload, upload, rules, ImageFinder())
        if not found.images:
            return found
        return await self._in_pool(match.profile, rewrite_upload, upload, rules)

    async def _in_pool(self, profile: SiteProfile, fn: Callable[..., Rewrite], *args) -> Rewrite:
        """Run `fn(*args, protector)` in the worker pool under the per-upload deadline."""
        if self.pool is None:
            self.pool = WorkerPool(ctx.options.sfumato_workers)
        timeout = float(ctx.options.sfumato_timeout)
        protector = ImageProtector(
            strength=self.site_strengths.get(profile.id, self.strength),
            model=ctx.options.sfumato_model or None,
            deadline=time.monotonic() + timeout,
            pixels=self.pixels,
        )
        try:
            return await self.pool.run(fn, *args, protector, timeout=timeout)
        except PoolTimeout:
            raise Refusal(
                "timeout",
                f"protecting the upload took longer than {timeout:g} s",
                "retry in a moment; if it keeps happening, protect the file before uploading "
                f"({PROTECT_COMMAND}) or raise sfumato_timeout",
            ) from None
        except Refusal:
            raise
        except Exception as err:  # fail closed on anything unexpected
            log.exception("sfumato: rewriting an upload failed")
            raise refusal_from_engine_error(err) from None

    def _body_limit(self) -> int:
        return min(ctx.options.sfumato_body_limit, self.buffer.limit)

    def _apply(self, flow: http.HTTPFlow, match: UploadMatch, rewrite: Rewrite) -> None:
        req = flow.request
        if rewrite.answer is not None:
            flow.response = rewrite.answer
            return
        for name in rewrite.remove_headers:
            req.headers.pop(name, None)
        for name, value in rewrite.set_headers.items():
            req.headers[name] = value
        if rewrite.path is not None:
            req.path = rewrite.path
        if rewrite.body is not None:
            req.raw_content = rewrite.body
            if "content-length" in req.headers or "transfer-encoding" not in req.headers:
                req.headers["content-length"] = str(len(rewrite.body))
        if rewrite.outcome is not None:
            self._report(
                Outcome(
                    site=match.profile.id,
                    shape=rewrite.shape or _shape_of(req),
                    host=req.pretty_host,
                    path=req.path,
                    method=req.method,
                    outcome=rewrite.outcome,
                    reason=rewrite.reason,
                    bytes_in=rewrite.bytes_in,
                    bytes_out=rewrite.bytes_out,
                    images=rewrite.images,
                    timings=rewrite.timings,
                )
            )

    def _answer(self, flow: http.HTTPFlow, match: UploadMatch, refusal: Refusal) -> http.Response:
        """The refusal the browser gets instead of the site's answer; logged in one line and
        reported. The site receives nothing."""
        req = flow.request
        flow.metadata["sfumato_refused"] = refusal.code
        log.warning(
            "sfumato: refused an upload to %s (%s): %s", match.profile.name, refusal.code, refusal
        )
        declared = req.headers.get("content-length", "")
        self._report(
            Outcome(
                site=match.profile.id,
                shape=_shape_of(req),
                host=req.pretty_host,
                path=req.path,
                method=req.method,
                outcome="refused",
                reason=str(refusal),
                code=refusal.code,
                bytes_in=int(declared) if declared.isdigit() else len(req.raw_content or b""),
            )
        )
        self._release(flow)
        return refusal_response(
            refusal,
            site_name=match.profile.name,
            accept=req.headers.get("accept", ""),
            origin=req.headers.get("origin"),
        )

    def _release(self, flow: http.HTTPFlow) -> None:
        guard: BodyGuard | None = flow.metadata.get(GUARD_KEY)
        if guard is not None:
            guard.reservation.release()

    def _report(self, outcome: Outcome) -> None:
        for listener in list(self.outcome_listeners):
            try:
                listener(outcome)
            except Exception:  # a broken listener must not break uploads
                log.exception("sfumato: outcome listener failed")


def _shape_of(request: http.Request) -> str:
    """The body shape named in outcomes when the pipeline did not get to say."""
    content_type = (request.headers.get("content-type") or "").lower()
    if content_type.startswith("multipart/"):
        return "multipart"
    if "json" in content_type or "form-urlencoded" in content_type or "text/" in content_type:
        return "data_url"
    return "raw"


addons = [Sfumato()]
