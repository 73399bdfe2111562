"""`sfumato pair`: print a one-time code for the extension; list or revoke paired clients.

The code is written (hashed) into the database, where a running server reads it when the
extension sends it to POST /v1/pair, so this works while `sfumato serve` runs, and before.
"""

from __future__ import annotations

import argparse
import json
import time

from proxy.cli import command, runnable
from proxy.data_dir import add_data_dir_argument, database_path, resolve_data_dir
from proxy.pairing import CODE_TTL, issue_code
from proxy.settings_store import NotFound, SettingsStore, StoreUnavailable


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pair",
        help="print a one-time pairing code for the browser extension",
        description="Print a one-time code (valid a few minutes) that pairs the browser "
        "extension or another client with the control API; or list/revoke paired clients.",
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--ttl",
        type=float,
        default=CODE_TTL,
        help=f"code lifetime in seconds (default: {CODE_TTL:g})",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list paired clients")
    group.add_argument("--revoke", type=int, metavar="ID", help="revoke a paired client's token")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "never"


def run(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    if not 10 <= args.ttl <= 3600:
        print("sfumato pair: --ttl must be between 10 and 3600 seconds")
        return 2
    try:
        store = SettingsStore.open(database_path(data_dir))
    except StoreUnavailable as exc:
        print(f"sfumato pair: {runnable(str(exc))}")
        return 1
    try:
        if args.list:
            clients = store.clients()
            if args.json:
                print(json.dumps([c.to_json() for c in clients]))
            elif not clients:
                print(f"no paired clients; run `{command('pair', data_dir=data_dir)}` to pair one")
            else:
                print(f"{'ID':>4}  {'NAME':<30}  {'PAIRED':<16}  LAST SEEN")
                for c in clients:
                    created, seen = _when(c.created), _when(c.last_seen)
                    print(f"{c.id:>4}  {c.name[:30]:<30}  {created:<16}  {seen}")
            return 0
        if args.revoke is not None:
            try:
                store.revoke_client(args.revoke)
            except NotFound as exc:
                print(f"sfumato pair: {runnable(str(exc))}")
                return 1
            print(f"revoked client {args.revoke}: its token no longer works")
            return 0
        code, expires = issue_code(store, args.ttl)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"code": code, "expires": expires}))
    else:
        minutes = max(1, round(args.ttl / 60))
        print(f"Pairing code: {code}")
        print(
            f"Type it into the Sfumato extension's options page within {minutes} minute(s). "
            "It works once."
        )
    return 0
