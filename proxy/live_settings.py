"""The bridge between stored settings and the running proxy, in both directions.

Down: `addon_options(store)` turns the database's sites and defaults into the Sfumato addon's
options, which the server applies with `master.options.update(...)` (the addon then narrows
`allow_hosts` itself). Up: `ActivityRecorder` is an `outcome_listeners` entry that writes every
upload outcome into the activity table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from proxy import site_profiles
from proxy.outcome import Outcome
from proxy.settings_store import ActivityEvent, BuiltinSite, SettingsStore

log = logging.getLogger("sfumato.activity")

# The addon options the settings store owns; `serve --set` may not set these (they would be
# overwritten by the next change through the API), so the store is the single source of truth.
STORE_OPTIONS = (
    "sfumato_sites",
    "sfumato_strength",
    "sfumato_site_strengths",
    "sfumato_custom_sites",
    "sfumato_body_limit",
)


def builtin_sites() -> dict[str, BuiltinSite]:
    """The built-in profiles, as the store and the API list them."""
    return {
        p.id: BuiltinSite(p.name, tuple(p.hosts), p.upload_hosts + p.shared_upload_hosts)
        for p in site_profiles.BUILTIN_PROFILES
    }


def addon_options(store: SettingsStore, builtin: dict[str, BuiltinSite]) -> dict[str, Any]:
    """The Sfumato addon option values that reproduce the stored state."""
    sites = store.sites(builtin)
    defaults = store.defaults()
    return {
        "sfumato_sites": ",".join(s.id for s in sites if s.enabled),
        "sfumato_strength": defaults.strength,
        "sfumato_site_strengths": ",".join(f"{s.id}={s.strength}" for s in sites if s.strength),
        "sfumato_custom_sites": json.dumps(
            [{"id": s.id, "name": s.name, "hosts": list(s.hosts)} for s in sites if s.custom]
        )
        if any(s.custom for s in sites)
        else "",
        "sfumato_body_limit": defaults.body_limit,
    }


class ActivityRecorder:
    """Outcome listener: one activity row per upload, plus one structured log line."""

    def __init__(self, store: SettingsStore, model_id: Callable[[], str | None]) -> None:
        self.store = store
        self.model_id = model_id

    def __call__(self, outcome: Outcome) -> None:
        event = ActivityEvent(
            outcome=outcome.outcome,
            site=outcome.site,
            kind=outcome.shape,
            size=outcome.bytes_in,
            reason=outcome.reason or None,
            code=outcome.code or None,
            model_id=self.model_id() if outcome.outcome == "protected" else None,
            timings={k: float(v) for k, v in (outcome.timings or {}).items()},
            time=outcome.time,
        )
        self.store.record_activity(event)
        # Host and outcome only: the path may carry ids or signatures, the body is never logged.
        log.info(
            "upload",
            extra={
                "site": outcome.site,
                "host": outcome.host,
                "outcome": outcome.outcome,
                "code": outcome.code or None,
                "shape": outcome.shape,
                "images": outcome.images,
                "bytes_in": outcome.bytes_in,
                "bytes_out": outcome.bytes_out,
            },
        )
