"""Facts about the addresses `sfumato serve` listens on: loopback or not, and free or taken."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for loopback names and addresses; wildcard and LAN addresses are not loopback."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind host:port now (what serve is about to do)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return False
    family, kind, proto, _, address = infos[0]
    with contextlib.closing(socket.socket(family, kind, proto)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def connect_host(host: str) -> str:
    """Where a local client should connect to reach a listener bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
