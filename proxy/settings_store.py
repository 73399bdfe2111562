"""Sfumato's state in one SQLite file: sites, defaults, paired clients, pairing codes, activity.

The schema is versioned with `PRAGMA user_version` and upgraded by the ordered MIGRATIONS below,
each in its own transaction, so a database written by any earlier release opens and keeps its data.
Several processes share the file (the server, and CLI commands such as `sfumato pair` and
`sfumato sites` while it runs): WAL mode lets them read and write concurrently, and the server
notices other writers through `PRAGMA data_version`.

Built-in sites are not rows until the user changes them: a missing row means "disabled, default
strength", so a new built-in profile appears without a migration.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from proxy.data_dir import ensure_private_dir, make_private, private_umask

# Each entry upgrades the schema from version N-1 to N. Never edit a released entry: append one.
MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL DEFAULT 0,
        strength TEXT,
        custom INTEGER NOT NULL DEFAULT 0,
        name TEXT,
        hosts TEXT
    );
    CREATE TABLE clients (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        last_seen REAL
    );
    CREATE TABLE activity (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        site TEXT,
        kind TEXT,
        size INTEGER,
        outcome TEXT NOT NULL,
        reason TEXT
    );
    """,
    # 2: pairing codes live in the database (so `sfumato pair` works while the server runs),
    # clients are revoked rather than deleted (last seen stays visible), activity keeps the
    # engine's timings and model, and per-site activity queries get an index.
    """
    CREATE TABLE pairing_codes (
        code_hash TEXT PRIMARY KEY,
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    ALTER TABLE clients ADD COLUMN revoked REAL;
    ALTER TABLE activity ADD COLUMN timings TEXT;
    ALTER TABLE activity ADD COLUMN model_id TEXT;
    CREATE INDEX activity_by_site ON activity (site, id);
    """,
    # 3: a refusal keeps its code (the X-Sfumato-Error value), so clients can word it in the
    # user's language.
    """
    ALTER TABLE activity ADD COLUMN code TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

STRENGTH_PRESETS = ("low", "default", "high")
MAX_STRENGTH = 4.0
# The addon always fails closed; the setting exists so a future fail-open mode needs no migration.
FAIL_MODES = ("closed",)
DEFAULT_BODY_LIMIT = 64 * 1024 * 1024
MAX_BODY_LIMIT = 1024 * 1024 * 1024
ACTIVITY_RETENTION = 10_000
OUTCOMES = ("protected", "refused", "passed")

_SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_HOST_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"^(\*\.)?{_HOST_LABEL}(\.{_HOST_LABEL})*$")


class SettingsError(ValueError):
    """A value a user or client sent cannot be stored; the message says which and why."""


class NotFound(LookupError):
    """No such site or client."""


class Conflict(Exception):
    """The change contradicts existing state (a built-in site cannot be deleted, ids are unique)."""


class StoreUnavailable(RuntimeError):
    """The database cannot be opened; the message names the file and what to do."""


class SchemaTooNew(StoreUnavailable):
    """The database was written by a newer Sfumato."""


@dataclass(frozen=True)
class Defaults:
    strength: str = "default"
    fail_mode: str = "closed"
    body_limit: int = DEFAULT_BODY_LIMIT


class BuiltinSite(NamedTuple):
    """What the store needs to know of a built-in site profile (proxy.site_profiles)."""

    name: str
    hosts: tuple[str, ...]
    upload_hosts: tuple[str, ...] = ()


BuiltinSites = Mapping[str, BuiltinSite]


@dataclass(frozen=True)
class SiteState:
    id: str
    name: str
    hosts: tuple[str, ...]
    custom: bool
    enabled: bool
    strength: str | None  # None: the global default
    upload_hosts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "hosts": list(self.hosts),
            "upload_hosts": list(self.upload_hosts),
            "builtin": not self.custom,
            "enabled": self.enabled,
            "strength": self.strength,
        }


@dataclass(frozen=True)
class Client:
    id: int
    name: str
    created: float
    last_seen: float | None
    revoked: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "last_seen": self.last_seen,
            "revoked": self.revoked,
        }


@dataclass(frozen=True)
class ActivityEvent:
    outcome: str  # protected | refused | passed
    site: str | None = None
    kind: str | None = None  # the upload shape: multipart, raw, data-url, chunked, ...
    size: int | None = None  # bytes of the original image(s)
    reason: str | None = None
    model_id: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    time: float | None = None
    id: int | None = None
    code: str | None = None  # a refusal's X-Sfumato-Error code

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "site": self.site,
            "kind": self.kind,
            "size": self.size,
            "outcome": self.outcome,
            "reason": self.reason,
            "code": self.code,
            "model_id": self.model_id,
            "timings": dict(self.timings),
        }


def validate_strength(value: object) -> str:
    """A preset name or a number in (0, MAX_STRENGTH], normalised to text for the addon."""
    if isinstance(value, str) and value.strip().lower() in STRENGTH_PRESETS:
        return value.strip().lower()
    if isinstance(value, bool):
        raise SettingsError(f"strength must be low, default, high or a number, not {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SettingsError(
            f"strength must be low, default, high or a number, not {value!r}"
        ) from None
    if not (0 < number <= MAX_STRENGTH):
        raise SettingsError(f"strength must be above 0 and at most {MAX_STRENGTH:g}, not {value!r}")
    return repr(number)


def validate_site_id(value: object) -> str:
    if not isinstance(value, str) or not _SITE_ID.match(value):
        raise SettingsError(
            f"site id must be 1-40 lowercase letters, digits, '-' or '_', not {value!r}"
        )
    return value


def validate_hosts(value: object) -> tuple[str, ...]:
    """Host names (optionally `*.`-prefixed), lowercased, without scheme, port or path."""
    if not isinstance(value, list | tuple) or not value:
        raise SettingsError("hosts must be a non-empty list of host names")
    if len(value) > 64:
        raise SettingsError("at most 64 hosts per site")
    hosts: list[str] = []
    for item in value:
        host = item.strip().lower().rstrip(".") if isinstance(item, str) else None
        if not host or len(host) > 253 or not _HOST.match(host):
            raise SettingsError(
                f"{item!r} is not a host name "
                "(write e.g. 'example.com', without https:// or a path)"
            )
        if host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def validate_body_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"body_limit must be a whole number of bytes, not {value!r}")
    if not (1024 <= value <= MAX_BODY_LIMIT):
        raise SettingsError(f"body_limit must be between 1024 and {MAX_BODY_LIMIT} bytes")
    return value


def validate_fail_mode(value: object) -> str:
    if value not in FAIL_MODES:
        raise SettingsError(f"fail_mode must be one of {', '.join(FAIL_MODES)}, not {value!r}")
    return str(value)


def _connect(path: Path) -> sqlite3.Connection:
    ensure_private_dir(path.parent)
    if not path.exists():
        with private_umask():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    with private_umask():  # the -wal and -shm files are created with the umask too
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    for suffix in ("", "-wal", "-shm"):
        make_private(Path(f"{path}{suffix}"))
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the schema up to len(migrations); returns the version found before upgrading."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > len(migrations):
        raise SchemaTooNew(
            f"the database has schema version {found}, newer than this Sfumato understands "
            f"({len(migrations)}); upgrade Sfumato or use another --data-dir"
        )
    for version in range(found + 1, len(migrations) + 1):
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{migrations[version - 1]}\nPRAGMA user_version = {version};\n"
                "COMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found


class SettingsStore:
    """All reads and writes of Sfumato's state. One instance per process and thread."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> SettingsStore:
        """Open (creating 0600 and migrating as needed) the database at `path`."""
        try:
            conn = _connect(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(
                f"cannot open the settings database {path}: {exc}; check its owner and "
                "permissions, or restore it from a backup of the data directory"
            ) from exc
        try:
            migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(
                f"cannot upgrade the settings database {path}: {exc}; restore it from a "
                "backup of the data directory, or move it away to start afresh"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def data_version(self) -> int:
        """Changes whenever another connection commits: the server's cue to re-apply settings."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # -- defaults ---------------------------------------------------------------------------
    def defaults(self) -> Defaults:
        rows = dict(self.conn.execute("SELECT key, value FROM settings").fetchall())
        base = Defaults()
        return Defaults(
            strength=rows.get("strength", base.strength),
            fail_mode=rows.get("fail_mode", base.fail_mode),
            body_limit=int(rows.get("body_limit", base.body_limit)),
        )

    def update_defaults(
        self,
        *,
        strength: object = None,
        fail_mode: object = None,
        body_limit: object = None,
    ) -> Defaults:
        """Validate everything first, then write in one transaction (all or nothing)."""
        values: dict[str, str] = {}
        if strength is not None:
            values["strength"] = validate_strength(strength)
        if fail_mode is not None:
            values["fail_mode"] = validate_fail_mode(fail_mode)
        if body_limit is not None:
            values["body_limit"] = str(validate_body_limit(body_limit))
        with self._transaction():
            self.conn.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                values.items(),
            )
        return self.defaults()

    # -- sites ------------------------------------------------------------------------------
    def sites(self, builtin: BuiltinSites) -> list[SiteState]:
        """Built-in sites in their given order, then custom sites by id."""
        rows = {r["id"]: r for r in self.conn.execute("SELECT * FROM sites ORDER BY id")}
        result: list[SiteState] = []
        for site_id, profile in builtin.items():
            row = rows.get(site_id)
            result.append(
                SiteState(
                    id=site_id,
                    name=profile.name,
                    hosts=tuple(profile.hosts),
                    upload_hosts=tuple(profile.upload_hosts),
                    custom=False,
                    enabled=bool(row and row["enabled"]),
                    strength=row["strength"] if row else None,
                )
            )
        for site_id, row in rows.items():
            if row["custom"] and site_id not in builtin:
                result.append(
                    SiteState(
                        id=site_id,
                        name=row["name"] or site_id,
                        hosts=tuple(json.loads(row["hosts"] or "[]")),
                        custom=True,
                        enabled=bool(row["enabled"]),
                        strength=row["strength"],
                    )
                )
        return result

    def set_site(
        self,
        site_id: str,
        builtin: BuiltinSites,
        *,
        enabled: bool | None = None,
        strength: object = None,
        clear_strength: bool = False,
    ) -> SiteState:
        """Enable/disable a site or set its strength (`clear_strength`: back to the default)."""
        if enabled is not None and not isinstance(enabled, bool):
            raise SettingsError(f"enabled must be true or false, not {enabled!r}")
        new_strength = None if strength is None else validate_strength(strength)
        with self._transaction():
            row = self.conn.execute("SELECT * FROM sites WHERE id = ?", (site_id,)).fetchone()
            if site_id not in builtin and not (row and row["custom"]):
                raise NotFound(f"no site {site_id!r}; `sfumato sites list` shows the ids")
            if row is None:
                self.conn.execute("INSERT INTO sites (id) VALUES (?)", (site_id,))
            if enabled is not None:
                self.conn.execute(
                    "UPDATE sites SET enabled = ? WHERE id = ?", (int(enabled), site_id)
                )
            if new_strength is not None or clear_strength:
                self.conn.execute(
                    "UPDATE sites SET strength = ? WHERE id = ?", (new_strength, site_id)
                )
        return next(s for s in self.sites(builtin) if s.id == site_id)

    def add_custom_site(
        self,
        site_id: object,
        name: object,
        hosts: object,
        builtin: BuiltinSites,
        *,
        enabled: bool = True,
    ) -> SiteState:
        sid = validate_site_id(site_id)
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise SettingsError("name must be 1-100 characters of text")
        host_list = validate_hosts(hosts)
        if sid in builtin:
            raise Conflict(f"{sid!r} is a built-in site; enable it instead of adding it")
        with self._transaction():
            if self.conn.execute("SELECT 1 FROM sites WHERE id = ?", (sid,)).fetchone():
                raise Conflict(f"a site with id {sid!r} already exists")
            self.conn.execute(
                "INSERT INTO sites (id, enabled, custom, name, hosts) VALUES (?, ?, 1, ?, ?)",
                (sid, int(enabled), name.strip(), json.dumps(list(host_list))),
            )
        return next(s for s in self.sites(builtin) if s.id == sid)

    def delete_custom_site(self, site_id: str, builtin: BuiltinSites) -> None:
        if site_id in builtin:
            raise Conflict(f"{site_id!r} is a built-in site; disable it instead")
        with self._transaction():
            cur = self.conn.execute("DELETE FROM sites WHERE id = ? AND custom = 1", (site_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no custom site {site_id!r}")

    # -- clients and pairing ----------------------------------------------------------------
    def add_client(self, name: str, token_hash: str, now: float | None = None) -> int:
        with self._transaction():
            cur = self.conn.execute(
                "INSERT INTO clients (name, token_hash, created) VALUES (?, ?, ?)",
                (name, token_hash, time.time() if now is None else now),
            )
        return int(cur.lastrowid or 0)

    def clients(self, *, include_revoked: bool = False) -> list[Client]:
        query = "SELECT id, name, created, last_seen, revoked FROM clients"
        if not include_revoked:
            query += " WHERE revoked IS NULL"
        return [Client(**dict(r)) for r in self.conn.execute(query + " ORDER BY id")]

    def active_token_hashes(self) -> list[tuple[int, str]]:
        rows = self.conn.execute("SELECT id, token_hash FROM clients WHERE revoked IS NULL")
        return [(r["id"], r["token_hash"]) for r in rows]

    def touch_client(self, client_id: int, now: float | None = None) -> None:
        with self._transaction():
            self.conn.execute(
                "UPDATE clients SET last_seen = ? WHERE id = ?",
                (time.time() if now is None else now, client_id),
            )

    def revoke_client(self, client_id: int, now: float | None = None) -> None:
        with self._transaction():
            cur = self.conn.execute(
                "UPDATE clients SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (time.time() if now is None else now, client_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no paired client with id {client_id}; `sfumato pair --list`")

    def add_pairing_code(self, code_hash: str, ttl: float, now: float | None = None) -> float:
        """Store a one-time code's hash; returns its expiry time. Expired codes are purged."""
        now = time.time() if now is None else now
        with self._transaction():
            self.conn.execute("DELETE FROM pairing_codes WHERE expires <= ?", (now,))
            self.conn.execute(
                "INSERT INTO pairing_codes (code_hash, created, expires) VALUES (?, ?, ?)",
                (code_hash, now, now + ttl),
            )
        return now + ttl

    def consume_pairing_code(self, code_hash: str, now: float | None = None) -> bool:
        """True exactly once for a stored, unexpired code (deleting it makes it single-use)."""
        now = time.time() if now is None else now
        with self._transaction():
            cur = self.conn.execute(
                "DELETE FROM pairing_codes WHERE code_hash = ? AND expires > ?", (code_hash, now)
            )
            self.conn.execute("DELETE FROM pairing_codes WHERE expires <= ?", (now,))
        return cur.rowcount == 1

    # -- activity ---------------------------------------------------------------------------
    def record_activity(self, event: ActivityEvent, *, retention: int = ACTIVITY_RETENTION) -> int:
        if event.outcome not in OUTCOMES:
            raise SettingsError(f"outcome must be one of {OUTCOMES}, not {event.outcome!r}")
        with self._transaction():
            cur = self.conn.execute(
                "INSERT INTO activity"
                " (time, site, kind, size, outcome, reason, timings, model_id, code)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time() if event.time is None else event.time,
                    event.site,
                    event.kind,
                    event.size,
                    event.outcome,
                    event.reason,
                    json.dumps(dict(event.timings)),
                    event.model_id,
                    event.code,
                ),
            )
            new_id = int(cur.lastrowid or 0)
            # Ids only grow, so everything at or below new_id - retention is older than the window.
            self.conn.execute("DELETE FROM activity WHERE id <= ?", (new_id - retention,))
        return new_id

    def activity(
        self, *, limit: int = 50, before: int | None = None, site: str | None = None
    ) -> list[ActivityEvent]:
        """Newest first; `before` is an event id (the previous page's last id)."""
        clauses, params = [], []
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        if site is not None:
            clauses.append("site = ?")
            params.append(site)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.conn.execute(
            f"SELECT * FROM activity {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [
            ActivityEvent(
                id=r["id"],
                time=r["time"],
                site=r["site"],
                kind=r["kind"],
                size=r["size"],
                outcome=r["outcome"],
                reason=r["reason"],
                model_id=r["model_id"],
                timings=json.loads(r["timings"] or "{}"),
                code=r["code"],
            )
            for r in rows
        ]

    def activity_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for outcome, n in self.conn.execute(
            "SELECT outcome, COUNT(*) FROM activity GROUP BY outcome"
        ):
            counts[outcome] = n
        return counts

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection is in autocommit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
