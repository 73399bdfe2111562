"""`sfumato ca`: print the interception CA certificate (or its path) so users can trust it."""

from __future__ import annotations

import argparse
import sys

from proxy.certificate_authority import (
    CertificateError,
    ca_cert_path,
    ca_certificate_pem,
    ca_fingerprint,
    ensure_ca,
)
from proxy.cli import runnable
from proxy.data_dir import add_data_dir_argument, resolve_data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ca",
        help="print Sfumato's CA certificate (to install it as trusted)",
        description="Print the PEM certificate of the CA Sfumato uses to intercept uploads to "
        "enabled sites (created on first use). Install it in the browser or system trust store.",
    )
    add_data_dir_argument(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--path", action="store_true", help="print the certificate file's path")
    what.add_argument("--fingerprint", action="store_true", help="print its SHA-256 fingerprint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    if ensure_ca(data_dir):
        print(f"created a new CA in {data_dir}", file=sys.stderr)
    try:
        if args.path:
            print(ca_cert_path(data_dir))
        elif args.fingerprint:
            print(ca_fingerprint(data_dir))
        else:
            sys.stdout.write(ca_certificate_pem(data_dir).decode())
    except CertificateError as exc:
        print(f"sfumato ca: {runnable(str(exc))}", file=sys.stderr)
        return 1
    return 0
