"""Test-only mitmproxy script for `sfumato serve -s`: every upstream connection to a non-loopback
address goes to 127.0.0.1:<test_upstream_port> instead (Host header and SNI unchanged), so site
names are reachable offline. Loopback targets (the control API) are left alone."""

from __future__ import annotations

from mitmproxy import ctx
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RedirectToLocal:
    def load(self, loader) -> None:
        loader.add_option("test_upstream_port", int, 0, "Local port standing in for every site.")

    def server_connect(self, data: ServerConnectionHookData) -> None:
        address = data.server.address
        if ctx.options.test_upstream_port and address and address[0] not in LOOPBACK:
            data.server.address = ("127.0.0.1", ctx.options.test_upstream_port)


addons = [RedirectToLocal()]
