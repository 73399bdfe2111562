"""The SQLite store: migrations from older schemas, file modes, validation, retention."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.data_dir import database_path
from proxy.live_settings import builtin_sites
from proxy.pairing import find_client, hash_secret
from proxy.settings_store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ActivityEvent,
    SchemaTooNew,
    SettingsError,
    SettingsStore,
    StoreUnavailable,
    migrate,
    validate_hosts,
    validate_strength,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_database_is_private_and_current(tmp_path: Path):
    data_dir = tmp_path / "fresh" / "data"
    store = SettingsStore.open(database_path(data_dir))
    try:
        store.update_defaults(strength="high")  # forces the WAL file into existence
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        store.close()
    assert mode(data_dir) == 0o700
    for path in data_dir.iterdir():
        assert mode(path) == 0o600, path


def _v1_database(path: Path) -> None:
    """A database as the first release wrote it, with data in every table."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    conn.executescript(
        f"""
        INSERT INTO settings VALUES ('strength', 'high'), ('body_limit', '1048576');
        INSERT INTO sites (id, enabled, strength) VALUES ('pixiv', 1, 'low');
        INSERT INTO sites (id, enabled, custom, name, hosts)
            VALUES ('mine', 1, 1, 'Mine', '["m.example"]');
        INSERT INTO clients (name, token_hash, created, last_seen)
            VALUES ('old laptop', '{hash_secret("sfm_oldtoken")}', 1.0, 2.0);
        INSERT INTO activity (time, site, kind, size, outcome, reason)
            VALUES (3.0, 'pixiv', 'multipart', 1234, 'refused', 'corrupt image');
        """
    )
    conn.close()


def test_upgrade_from_version_1_keeps_every_row(tmp_path: Path):
    path = database_path(tmp_path)
    _v1_database(path)
    store = SettingsStore.open(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 3
        assert store.defaults().strength == "high"
        assert store.defaults().body_limit == 1048576
        sites = {s.id: s for s in store.sites(builtin_sites())}
        assert sites["pixiv"].enabled and sites["pixiv"].strength == "low"
        assert sites["mine"].custom and sites["mine"].hosts == ("m.example",)
        assert find_client(store, "sfm_oldtoken") is not None  # the paired client still works
        [event] = store.activity()
        assert (event.outcome, event.reason, event.timings) == ("refused", "corrupt image", {})
        assert event.code is None  # recorded before refusals kept their code
        # the new schema's features work on the upgraded database
        store.revoke_client(store.clients()[0].id)
        assert find_client(store, "sfm_oldtoken") is None
        assert store.add_pairing_code("h", 60) > 0
    finally:
        store.close()


def test_failed_migration_rolls_back(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    broken = [MIGRATIONS[0], "CREATE TABLE half_done (x); THIS IS NOT SQL;"]
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path):
    path = database_path(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade Sfumato"):
        SettingsStore.open(path)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path):
    path = database_path(tmp_path)
    path.write_bytes(b"this is a text file, not SQLite" * 100)
    with pytest.raises(StoreUnavailable, match="restore it from a backup"):
        SettingsStore.open(path)


def test_a_refusal_keeps_its_code(store: SettingsStore):
    store.record_activity(ActivityEvent(outcome="refused", reason="bad", code="corrupt-image"))
    store.record_activity(ActivityEvent(outcome="protected"))
    assert [e.to_json()["code"] for e in store.activity()] == [None, "corrupt-image"]
    # the proxy's outcome carries the code into the activity the extension reads
    from proxy.live_settings import ActivityRecorder
    from proxy.outcome import Outcome

    ActivityRecorder(store, lambda: None)(
        Outcome("pixiv", "multipart", "www.pixiv.net", "/", "refused", "too slow", code="timeout")
    )
    assert store.activity()[0].code == "timeout"


def test_activity_retention_keeps_the_newest(store: SettingsStore):
    for i in range(10):
        store.record_activity(ActivityEvent(outcome="passed", size=i), retention=3)
    assert [e.size for e in store.activity()] == [9, 8, 7]
    with pytest.raises(SettingsError):
        store.record_activity(ActivityEvent(outcome="exploded"))


def test_pairing_codes_are_single_use_and_expire(store: SettingsStore):
    store.add_pairing_code("a", ttl=60, now=100.0)
    store.add_pairing_code("b", ttl=60, now=100.0)
    assert store.consume_pairing_code("a", now=120.0)
    assert not store.consume_pairing_code("a", now=121.0)
    assert not store.consume_pairing_code("b", now=161.0)


def test_two_connections_see_each_others_writes(store: SettingsStore):
    """What lets `sfumato sites` change a running server: data_version moves on foreign commits."""
    other = SettingsStore.open(store.path)
    try:
        before = store.data_version()
        other.set_site("x", builtin_sites(), enabled=True)
        assert store.data_version() != before
        assert next(s for s in store.sites(builtin_sites()) if s.id == "x").enabled
    finally:
        other.close()


@given(st.one_of(st.text(max_size=20), st.floats(allow_nan=True), st.integers(), st.none()))
def test_strength_validation_never_crashes(value):
    try:
        result = validate_strength(value)
    except SettingsError as exc:
        assert "strength" in str(exc)
    else:
        assert result in ("low", "default", "high") or 0 < float(result) <= 4


@given(st.lists(st.text(max_size=30), max_size=5))
def test_host_validation_never_crashes(hosts):
    try:
        result = validate_hosts(hosts)
    except SettingsError:
        return
    assert result and all(h == h.lower() and "/" not in h and ":" not in h for h in result)
