"""Test-only mitmproxy script: send everything to 127.0.0.1:<test_upstream_port> instead of the
real sites (Host header and SNI unchanged), so `mitmdump -s proxy/addon.py` can be tested
offline. Load it after proxy/addon.py."""

from __future__ import annotations

from mitmproxy import ctx
from mitmproxy.proxy.server_hooks import ServerConnectionHookData


class RedirectToLocal:
    def load(self, loader) -> None:
        loader.add_option("test_upstream_port", int, 0, "Local port standing in for every site.")

    def requestheaders(self, flow) -> None:
        # Decrypted requests: redirect the request (Host kept), so connections are reused.
        if flow.response is not None or not ctx.options.test_upstream_port:
            return
        host_header = flow.request.host_header
        flow.request.host = "127.0.0.1"
        flow.request.port = ctx.options.test_upstream_port
        if host_header:
            flow.request.host_header = host_header

    def server_connect(self, data: ServerConnectionHookData) -> None:
        # Tunnelled connections (sites not enabled): redirect the connection, SNI kept.
        port = ctx.options.test_upstream_port
        if port and data.server.address and data.server.address[0] != "127.0.0.1":
            data.server.address = ("127.0.0.1", port)


addons = [RedirectToLocal()]
