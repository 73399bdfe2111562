"""What a user does after the first start: trust the CA, point the browser, pair the extension.

`sfumato serve` prints this on its first start and `sfumato doctor --guide` prints it on request
(or when nothing is set up yet), so both say the same thing. Every command in it is written the
way this machine's shell can run it (see proxy.cli.command).
"""

from __future__ import annotations

from pathlib import Path

from proxy.cli import command, make_run_or


def next_steps(
    ca_file: Path,
    *,
    proxy: str = "127.0.0.1:8080",
    api: str = "http://127.0.0.1:8765",
    data_dir: Path | None = None,
    started: bool = True,
) -> str:
    """The numbered next steps, with this machine's CA path, addresses and commands filled in.

    `started=False` (nothing set up yet) adds the first step: start Sfumato once.
    """

    def run(*words: str) -> str:
        return command(*words, data_dir=data_dir)

    cer = ca_file.with_suffix(".cer")
    steps = [
        f"""\
Trust Sfumato's certificate authority. It is created just for you on the first start and
   never leaves this machine; `{run("ca", "--path")}` prints where it is:
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
   Keep the data directory private: whoever has its key can read your HTTPS traffic.""",
        f"""\
Send your art sites through the proxy at {proxy}:
   - with the Sfumato browser extension (recommended: only the sites you protect use the proxy),
   - or set the browser's HTTP and HTTPS proxy to {proxy} by hand.""",
        f"""\
Pair the extension: run
     {run("pair")}
   and type the code it prints into the extension's options page (backend address: {api}).""",
        f"""\
Turn protection on per site in the extension's popup, or from here:
     {run("sites", "enable", "deviantart")}""",
    ]
    if started:
        heading = "Sfumato is set up. Next steps:"
    else:
        heading = "Sfumato is not set up yet. To set it up:"
        steps.insert(
            0,
            f"Start it{make_run_or(data_dir)}. The first start creates the data\n"
            f"   directory, the certificate authority and the database:\n     {run('serve')}",
        )
    numbered = "\n\n".join(f"{n}. {text}" for n, text in enumerate(steps, 1))
    return f"{heading}\n\n{numbered}\n\nCheck the setup at any time with:\n  {run('doctor')}\n"
