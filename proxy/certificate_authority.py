"""The interception CA in the data directory: created once, private, and described for users.

mitmproxy would create the CA itself on first use, but writes the public certificate files with the
process umask; we create the store first inside a 0077 umask so every file is 0600, then hand the
directory to mitmproxy as its `confdir`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy.certs import CertStore

from proxy.data_dir import ensure_private_dir, make_private, private_umask

CA_BASENAME = "mitmproxy"  # mitmproxy's file names, so `mitmdump --set confdir=DIR` shares the CA
KEY_SIZE = 2048
CA_FILES = (
    f"{CA_BASENAME}-ca.pem",  # private key + certificate
    f"{CA_BASENAME}-ca.p12",
    f"{CA_BASENAME}-ca-cert.pem",  # the certificate users install
    f"{CA_BASENAME}-ca-cert.cer",
    f"{CA_BASENAME}-ca-cert.p12",
    f"{CA_BASENAME}-dhparam.pem",
)


class CertificateError(Exception):
    """The CA files exist but cannot be used."""


def ca_key_path(data_dir: Path) -> Path:
    return data_dir / f"{CA_BASENAME}-ca.pem"


def ca_cert_path(data_dir: Path) -> Path:
    """The public certificate to install in browsers and the system trust store."""
    return data_dir / f"{CA_BASENAME}-ca-cert.pem"


def ensure_ca(data_dir: Path) -> bool:
    """Create the CA in `data_dir` if it is missing. Returns True when it was created now."""
    ensure_private_dir(data_dir)
    created = False
    if not ca_key_path(data_dir).exists():
        with private_umask():
            CertStore.create_store(data_dir, CA_BASENAME, KEY_SIZE)
        created = True
    for name in CA_FILES:
        make_private(data_dir / name)
    return created


def load_ca_certificate(data_dir: Path) -> x509.Certificate:
    path = ca_cert_path(data_dir)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as exc:
        raise CertificateError(
            f"no CA certificate at {path}; start `sfumato serve` once to create it"
        ) from exc
    except ValueError as exc:
        raise CertificateError(
            f"{path} is not a PEM certificate; move the data directory's mitmproxy-ca* files "
            "away and restart `sfumato serve` to create a new CA (then trust it again)"
        ) from exc


def ca_certificate_pem(data_dir: Path) -> bytes:
    return load_ca_certificate(data_dir).public_bytes(serialization.Encoding.PEM)


def ca_fingerprint(data_dir: Path) -> str:
    """SHA-256 of the certificate's DER, as browsers show it (AA:BB:...)."""
    der = load_ca_certificate(data_dir).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
