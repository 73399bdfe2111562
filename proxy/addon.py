"""The Sfumato mitmproxy addon: protect artwork uploads in flight, fail closed.

    mitmdump -s proxy/addon.py --set sfumato_sites=deviantart,instagram

For every request the addon asks one question in `requestheaders`: is this a candidate upload
to an enabled site (see `site_profiles`)? Everything else streams through untouched, and TLS is
only intercepted for enabled sites' hosts (`allow_hosts` is narrowed unless the user set it).
Candidate bodies are buffered, handed to a bounded worker pool that finds the images (by magic
bytes), protects each with `perturb.protect` and rebuilds the body byte-exact around them. Any
failure answers the browser with a clear error and the site receives nothing. Every outcome
goes to `Sfumato.outcome_listeners`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
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
from proxy.outcome import Outcome, OutcomeKind  # noqa: E402
from proxy.site_profiles import SiteProfile, UploadMatch  # noqa: E402
from proxy.uploads import x_media_upload as chunked_upload  # noqa: E402
from proxy.uploads.image_protection import ImageProtector  # noqa: E402
from proxy.uploads.refusal import Refusal, refusal_from_engine_error, refusal_response  # noqa: E402
from proxy.uploads.upload_rewrite import Rewrite, UploadRequest, rewrite_upload  # noqa: E402
from proxy.uploads.worker_pool import PoolTimeout, WorkerPool  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_BODY_LIMIT = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 20
DEFAULT_WORKERS = max(1, min(4, (os.cpu_count() or 2) // 2))
# allow_hosts entry that matches no host: with no site enabled, intercept nothing.
MATCH_NOTHING = "(?!)"
STREAM_RESPONSES_OVER = 1024 * 1024
_META = "sfumato_upload"
_X_INIT = "sfumato_x_init"

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
        self.x_uploads = chunked_upload.XUploadStore()
        self._own_allow_hosts: list[str] | None = None
        self._user_allow_hosts = False

    # ----------------------------------------------------------------- options

    def load(self, loader: Loader) -> None:
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
            "Largest upload body (bytes) Sfumato buffers; larger uploads to enabled sites are "
            "refused.",
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
        req = flow.request
        match = site_profiles.match_upload(
            self.enabled, req.method, req.pretty_host, req.path, req.headers
        )
        if match is None:
            req.stream = True
            return
        flow.metadata[_META] = match
        # Buffer it, even if another addon (e.g. mitmproxy's stream_large_bodies) chose to
        # stream it: a streamed upload would reach the site unprotected.
        req.stream = False
        declared = req.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > ctx.options.sfumato_body_limit:
            self._refuse(flow, match, self._too_large(int(declared)), bytes_in=int(declared))

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        match: UploadMatch | None = flow.metadata.get(_META)
        if match is None:
            return
        size = len(flow.request.raw_content or b"")
        try:
            if size > ctx.options.sfumato_body_limit:
                raise self._too_large(size)
            if match.shape == "x_chunked":
                await self._x_request(flow, match)
                return
            upload = UploadRequest.from_flow(flow.request)
            rewrite_fn = partial(rewrite_upload, keep_size=match.rule.keep_size)
            rewrite = await self._in_pool(match.profile, rewrite_fn, match.shape, upload)
            self._apply(flow, match, rewrite)
        except Refusal as refusal:
            self._refuse(flow, match, refusal, bytes_in=size)
        except Exception as err:
            # Fail closed: a bug must never let an enabled site's upload through unprotected
            # (mitmproxy would log a hook's exception and forward the request).
            log.exception("sfumato: handling an upload failed")
            self._refuse(flow, match, refusal_from_engine_error(err), bytes_in=size)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # Responses are never rewritten: stream large ones (downloads stay fast and unbuffered).
        # Small ones are left to mitmproxy's default; an X INIT answer is read in `response`.
        if flow.response is None or _X_INIT in flow.metadata:
            return
        declared = flow.response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > STREAM_RESPONSES_OVER:
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        init = flow.metadata.get(_X_INIT)
        if init is None or flow.response is None:
            return
        step, declared = init
        media_id = chunked_upload.media_id_from_response(flow.response.content or b"")
        if media_id and 200 <= flow.response.status_code < 300:
            self.x_uploads.track(media_id, step.total_bytes, step.media_type, declared)

    # --------------------------------------------------------------- internals

    async def _in_pool(self, profile: SiteProfile, fn: Callable[..., Rewrite], *args) -> Rewrite:
        """Run `fn(*args, protector)` in the worker pool under the per-upload deadline."""
        if self.pool is None:
            self.pool = WorkerPool(ctx.options.sfumato_workers)
        timeout = float(ctx.options.sfumato_timeout)
        protector = ImageProtector(
            strength=self.site_strengths.get(profile.id, self.strength),
            model=ctx.options.sfumato_model or None,
            deadline=time.monotonic() + timeout,
        )
        try:
            return await self.pool.run(fn, *args, protector, timeout=timeout)
        except PoolTimeout:
            raise Refusal(
                "timeout",
                f"protecting the upload took longer than {timeout:g} s",
                "retry in a moment; if it keeps happening, protect the file before uploading "
                "(sfumato protect FILE) or raise sfumato_timeout",
            ) from None
        except Refusal:
            raise
        except Exception as err:  # fail closed on anything unexpected
            log.exception("sfumato: rewriting an upload failed")
            raise refusal_from_engine_error(err) from None

    def _too_large(self, size: int) -> Refusal:
        limit = ctx.options.sfumato_body_limit
        return Refusal(
            "body-too-large",
            f"the upload is {size} bytes, more than Sfumato's limit of {limit} bytes",
            "protect the file before uploading (sfumato protect FILE), or raise sfumato_body_limit",
        )

    def _apply_quietly(self, flow: http.HTTPFlow, rewrite: Rewrite) -> None:
        """Apply a rewrite that is not an upload outcome (X INIT, FINALIZE)."""
        rewrite.outcome = None
        self._apply(flow, None, rewrite)

    def _apply(self, flow: http.HTTPFlow, match: UploadMatch | None, rewrite: Rewrite) -> None:
        req = flow.request
        for name in rewrite.remove_headers:
            req.headers.pop(name, None)
        for name, value in rewrite.set_headers.items():
            req.headers[name] = value
        if rewrite.path is not None:
            req.path = rewrite.path
        if rewrite.body is not None:
            if rewrite.raw:
                req.raw_content = rewrite.body
                if "content-length" in req.headers or "transfer-encoding" not in req.headers:
                    req.headers["content-length"] = str(len(rewrite.body))
            else:
                req.content = rewrite.body
        if rewrite.outcome is not None and match is not None:
            self._report(self._outcome(flow, match, rewrite.outcome, rewrite))

    def _outcome(
        self, flow: http.HTTPFlow, match: UploadMatch, kind: OutcomeKind, rewrite: Rewrite
    ) -> Outcome:
        return Outcome(
            site=match.profile.id,
            shape=rewrite.shape or match.shape,
            host=flow.request.pretty_host,
            path=flow.request.path,
            method=flow.request.method,
            outcome=kind,
            reason=rewrite.reason,
            bytes_in=rewrite.bytes_in,
            bytes_out=rewrite.bytes_out,
            images=rewrite.images,
            timings=rewrite.timings,
        )

    def _refuse(
        self, flow: http.HTTPFlow, match: UploadMatch, refusal: Refusal, *, bytes_in: int = 0
    ) -> None:
        headers = flow.request.headers
        flow.response = refusal_response(
            refusal,
            site_name=match.profile.name,
            accept=headers.get("accept", ""),
            origin=headers.get("origin"),
        )
        flow.metadata["sfumato_refused"] = refusal.code
        log.warning(
            "sfumato: refused upload to %s (%s): %s", match.profile.name, refusal.code, refusal
        )
        self._report(
            Outcome(
                site=match.profile.id,
                shape=match.shape,
                host=flow.request.pretty_host,
                path=flow.request.path,
                method=flow.request.method,
                outcome="refused",
                reason=str(refusal),
                code=refusal.code,
                bytes_in=bytes_in,
            )
        )

    def _report(self, outcome: Outcome) -> None:
        for listener in list(self.outcome_listeners):
            try:
                listener(outcome)
            except Exception:  # a broken listener must not break uploads
                log.exception("sfumato: outcome listener failed")

    # ---------------------------------------------------------------- X (INIT/APPEND/FINALIZE)

    async def _x_request(self, flow: http.HTTPFlow, match: UploadMatch) -> None:
        upload = UploadRequest.from_flow(flow.request)
        try:
            step = chunked_upload.parse_step(upload.path, upload.body, upload.content_type)
        except chunked_upload.ChunkedUploadError as err:
            raise Refusal("bad-request", str(err), "retry the upload") from None
        try:
            await self._x_step(flow, match, upload, step)
        except chunked_upload.ChunkedUploadError as err:
            self.x_uploads.pop(step.media_id)
            raise Refusal("bad-request", str(err), "retry the upload") from None
        except Refusal:
            self.x_uploads.pop(step.media_id)
            raise

    async def _x_step(
        self,
        flow: http.HTTPFlow,
        match: UploadMatch,
        upload: UploadRequest,
        step: chunked_upload.Step,
    ) -> None:
        limit = ctx.options.sfumato_body_limit
        if step.command == "INIT":
            if step.media_type.startswith("image/"):
                if step.total_bytes > limit:
                    raise self._too_large(step.total_bytes)
                declared = chunked_upload.declared_total(step.media_type, step.total_bytes)
                flow.metadata[_X_INIT] = (step, declared)
                if declared != step.total_bytes:
                    # Room for a protected lossless file (padded to exactly this length later).
                    self._apply_quietly(flow, chunked_upload.init_rewrite(upload, declared))
            return
        entry = self.x_uploads.get(step.media_id) if step.media_id else None
        if step.command == "APPEND":
            if entry is None:
                if step.segment_index == 0 and chunked_upload.segment_is_image(step):
                    raise Refusal(
                        "unsupported-upload",
                        "this image upload started before Sfumato saw its INIT request",
                        "retry the upload",
                    )
                return  # not an image upload Sfumato tracks (video, ...)
            entry.add(step.segment_index, step.segment)
            if entry.received < entry.total_bytes:
                # Hold the bytes: the site gets the whole protected file in one APPEND later.
                # The page calls upload.x.com cross-origin: the answer needs CORS headers.
                headers = {"Cache-Control": "no-store"}
                origin = flow.request.headers.get("origin")
                if origin and origin != "null":
                    headers["Access-Control-Allow-Origin"] = origin
                    headers["Access-Control-Allow-Credentials"] = "true"
                    headers["Vary"] = "Origin"
                flow.response = http.Response.make(204, b"", headers)
                return
            data = entry.assemble()
            rewrite = await self._in_pool(
                match.profile,
                chunked_upload.protect_append,
                upload,
                step,
                data,
                entry.declared_bytes,
            )
            entry.protected_md5 = hashlib.md5(rewrite.protected_data).hexdigest()
            self._apply(flow, match, rewrite)
            return
        if step.command == "FINALIZE" and entry is not None:
            if entry.protected_md5 is None:
                raise Refusal(
                    "unsupported-upload",
                    "the upload was finalized before all of its bytes arrived",
                    "retry the upload",
                )
            fix = chunked_upload.finalize_rewrite(upload, step, entry.protected_md5)
            self.x_uploads.pop(step.media_id)
            self._apply(flow, match, fix)


addons = [Sfumato()]
