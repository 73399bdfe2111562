"""Test-only mitmproxy script: send every upstream connection to 127.0.0.1:<test_upstream_port>
(Host header and SNI unchanged), so `mitmdump -s proxy/addon.py` can be tested offline."""

from __future__ import annotations

from mitmproxy import ctx
from mitmproxy.proxy.server_hooks import ServerConnectionHookData


class RedirectToLocal:
    def load(self, loader) -> None:
        loader.add_option("test_upstream_port", int, 0, "Local port standing in for every site.")

    def server_connect(self, data: ServerConnectionHookData) -> None:
        if ctx.options.test_upstream_port:
            data.server.address = ("127.0.0.1", ctx.options.test_upstream_port)


addons = [RedirectToLocal()]
