"""What a user does after the first start: trust the CA, point the browser, pair the extension.

`sfumato serve` prints this on its first start and `sfumato doctor` prints it whenever a check
fails, so both say the same thing.
"""

from __future__ import annotations

from pathlib import Path


def next_steps(
    ca_file: Path, *, proxy: str = "127.0.0.1:8080", api: str = "http://127.0.0.1:8765"
) -> str:
    """The numbered next steps, with this machine's CA path and addresses filled in."""
    cer = ca_file.with_suffix(".cer")
    return f"""\
Sfumato is set up. Next steps:

1. Trust Sfumato's certificate authority (it was created just for you and never leaves this
   machine; `sfumato ca --path` prints where it is):
     {ca_file}
   - Firefox (any OS): Settings > Privacy & Security > Certificates > View Certificates >
     Authorities > Import..., choose the file, tick "Trust this CA to identify websites".
   - Chrome / Chromium / Edge on Linux: chrome://certificate-manager (or chrome://settings/
     certificates) > Authorities > Import, or:
       certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n sfumato -i {ca_file}
   - Linux system store (curl, Python, ...):
       sudo cp {ca_file} /usr/local/share/ca-certificates/sfumato.crt && sudo update-ca-certificates
   - macOS (Safari, Chrome):
       sudo security add-trusted-cert -d -r trustRoot \\
         -k /Library/Keychains/System.keychain {ca_file}
   - Windows (Edge, Chrome), in an administrator prompt:
       certutil -addstore root {cer}
   Keep the data directory private: whoever has its key can read your HTTPS traffic.

2. Send your art sites through the proxy at {proxy}:
   - with the Sfumato browser extension (recommended: only the sites you protect use the proxy),
   - or set the browser's HTTP and HTTPS proxy to {proxy} by hand.

3. Pair the extension: run `sfumato pair` and type the code into the extension's options page
   (backend address: {api}).

4. Turn protection on per site in the extension, or: sfumato sites enable deviantart

Check the setup at any time with `sfumato doctor`.
"""
