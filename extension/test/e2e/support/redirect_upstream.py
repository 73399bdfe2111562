"""mitmproxy addon for the extension's end-to-end test: send every upstream connection to the
local test server impersonating the art site (SFUMATO_E2E_UPSTREAM="127.0.0.1:PORT").

Only the TCP destination changes: the request (Host header, URL) and the TLS SNI stay the site's,
so the Sfumato addon sees exactly what it would see online. The machine is offline, so without
this mitmproxy could not resolve the site's name.
"""

from __future__ import annotations

import os

from mitmproxy.proxy import server_hooks


class RedirectUpstream:
    def __init__(self) -> None:
        host, _, port = os.environ["SFUMATO_E2E_UPSTREAM"].rpartition(":")
        self.address = (host, int(port))

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        data.server.address = self.address


addons = [RedirectUpstream()]
