"""Pure parts of the server: pairing codes, throttling, Host parsing, log scrubbing, options."""

from __future__ import annotations

import io
import json
import logging

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.test import taddons

from proxy.addon import Sfumato
from proxy.control_api import allowed_host_names, host_name, is_extension_origin
from proxy.live_settings import addon_options, builtin_sites
from proxy.pairing import CODE_ALPHABET, PairingThrottle, new_code, new_token, normalize_code
from proxy.serve import ServeConfig, ServeError, check_config, parse_set
from proxy.settings_store import SettingsStore
from proxy.structured_log import JsonFormatter, scrub


@given(st.data())
def test_codes_normalize_however_they_are_typed(data):
    code = new_code()
    typed = data.draw(st.sampled_from([code, code.lower(), code.replace("-", " "), f" {code} "]))
    assert normalize_code(typed) == code.replace("-", "")


@given(st.text(max_size=80))
def test_code_normalization_never_crashes(text):
    result = normalize_code(text)
    assert result is None or (len(result) == 8 and set(result) <= set(CODE_ALPHABET))


def test_tokens_are_long_and_distinct():
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) > 40 for t in tokens)


def test_throttle_window_slides():
    now = [0.0]
    throttle = PairingThrottle(max_failures=2, window=10, clock=lambda: now[0])
    throttle.failed()
    now[0] = 5
    throttle.failed()
    assert throttle.retry_after() == 5
    now[0] = 10.5  # the first failure left the window
    assert throttle.retry_after() == 0


@given(st.text(max_size=60))
def test_host_parsing_never_crashes(value):
    result = host_name(value)
    assert result is None or (result == result.lower() and not result.endswith("]"))


@given(st.sampled_from(["localhost", "127.0.0.1", "example.lan"]), st.integers(0, 65535))
def test_host_with_port_is_the_host(host, port):
    assert host_name(f"{host}:{port}") == host
    assert host_name(host.upper()) == host


def test_ipv6_and_malformed_hosts():
    assert host_name("[::1]:8765") == "::1"
    assert host_name("[0:0::1]") == "::1"
    assert host_name("[::1") is None
    assert host_name("a b") is None
    assert host_name("host:port") is None
    assert allowed_host_names("0.0.0.0", "::", "nas.lan", "192.168.1.5") >= {
        "nas.lan",
        "192.168.1.5",
        "localhost",
    }
    assert "0.0.0.0" not in allowed_host_names("0.0.0.0")


def test_extension_origins():
    assert is_extension_origin("chrome-extension://abcdefghijklmnopabcdefghijklmnop")
    assert is_extension_origin("moz-extension://0d5e3f6a-1111-4c2b-9b8e-0123456789ab")
    for web in ("https://chrome-extension.evil", "chrome-extension://a/b", "null", "file://"):
        assert not is_extension_origin(web)


def test_scrub_masks_secrets():
    line = scrub(
        "Authorization: Bearer abc.def sfm_abcdefghijklmnop Cookie: sid=1; x=2\n"
        "proxyauth=alice:secret"
    )
    for secret in ("abc.def", "abcdefghijklmnop", "sid=1", "secret"):
        assert secret not in line


def test_json_log_lines_carry_extras_and_no_token():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sfumato.test")
    logger.addHandler(handler)
    try:
        logger.warning("paired with sfm_secretsecretsecret", extra={"client": 3})
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["client"] == 3 and entry["level"] == "warning"
    assert "secretsecret" not in stream.getvalue()


def test_stored_settings_configure_the_real_addon(store: SettingsStore):
    builtin = builtin_sites()
    store.set_site("pixiv", builtin, enabled=True, strength="high")
    store.set_site("x", builtin, enabled=False, strength="0.7")
    store.add_custom_site("mine", "Mine", ["art.example"], builtin)
    store.update_defaults(strength="low", body_limit=4096)
    addon = Sfumato()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, **addon_options(store, builtin))
        assert [p.id for p in addon.enabled] == ["pixiv", "mine"]
        assert addon.strength == "low"
        assert addon.site_strengths == {"pixiv": "high", "x": 0.7}
        assert tctx.options.sfumato_body_limit == 4096
        assert any("art" in pattern for pattern in tctx.options.allow_hosts)


def test_serve_refuses_unsafe_or_conflicting_configs(tmp_path):
    base = {"data_dir": tmp_path, "proxy_port": 0, "api_port": 1}
    try:
        check_config(ServeConfig(**base, proxy_host="0.0.0.0"))
    except ServeError as exc:
        assert "proxyauth" in str(exc)
    else:
        raise AssertionError("listening beyond loopback without proxyauth must be refused")
    for sets, needle in (
        (["sfumato_sites=pixiv"], "stored settings"),
        (["nonsense"], "KEY=VALUE"),
        (["listen_host=0.0.0.0"], "--proxy-host instead"),
        (["confdir=/tmp/elsewhere"], "--data-dir instead"),
    ):
        try:
            check_config(ServeConfig(**base, sets=sets))
        except ServeError as exc:
            assert needle in str(exc)
        else:
            raise AssertionError(sets)
    assert parse_set(["proxyauth=a:b=c", "x=1", "x=2"]) == {"proxyauth": "a:b=c", "x": "2"}


_LABEL = r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"


@given(
    st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"),
    st.lists(st.from_regex(rf"\A(\*\.)?{_LABEL}(\.{_LABEL}){{0,3}}\Z"), min_size=1, max_size=3),
)
def test_every_custom_site_the_store_accepts_the_addon_accepts(site_id, hosts):
    """A stored site the addon would reject would stop `serve` from starting: never store one."""
    from proxy import site_profiles
    from proxy.settings_store import SettingsError, validate_hosts, validate_site_id

    try:
        sid, clean = validate_site_id(site_id), validate_hosts(hosts)
    except SettingsError:
        return
    if sid in site_profiles.BUILTIN_IDS:
        return
    entry = {"id": sid, "name": "N", "hosts": list(clean)}
    [profile] = site_profiles.parse_custom_sites(json.dumps([entry]))
    assert profile.hosts == clean


def test_serve_refuses_a_taken_port(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            check_config(ServeConfig(data_dir=tmp_path, proxy_port=port, api_port=0))
        except ServeError as exc:
            assert f"127.0.0.1:{port}" in str(exc) and "--proxy-port" in str(exc)
        else:
            raise AssertionError("a taken port must be refused before starting")


def test_modes_listening_beyond_loopback_need_proxyauth():
    from proxy.serve import mode_listen_hosts, require_proxyauth

    assert mode_listen_hosts(["regular"], "127.0.0.1") == ["127.0.0.1"]
    exposed = mode_listen_hosts(["regular", "regular@0.0.0.0:9090"], "127.0.0.1")
    assert exposed == ["127.0.0.1", "0.0.0.0"]
    try:
        require_proxyauth(exposed, "")
    except ServeError as exc:
        assert "0.0.0.0" in str(exc) and "proxyauth" in str(exc)
    else:
        raise AssertionError("an exposed mode without proxyauth must be refused")
    require_proxyauth(exposed, "@/etc/sfumato/htpasswd")  # allowed with credentials
    require_proxyauth(["::1", "localhost"], "")
