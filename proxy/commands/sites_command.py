"""`sfumato sites`: list sites and turn protection on or off, from the command line.

Changes go to the database; a running `sfumato serve` notices within a second and applies them.
"""

from __future__ import annotations

import argparse
import json

from proxy.cli import runnable
from proxy.data_dir import add_data_dir_argument, database_path, resolve_data_dir
from proxy.settings_store import (
    Conflict,
    NotFound,
    SettingsError,
    SettingsStore,
    StoreUnavailable,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sites",
        help="list sites, enable or disable protection, add custom sites",
        description="Show and change which sites' uploads are protected. A running "
        "`sfumato serve` applies changes within a second.",
    )
    add_data_dir_argument(p)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    ls = sub.add_parser("list", help="list sites (the default)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("enable", "protect uploads to a site"), ("disable", "stop protecting")):
        action = sub.add_parser(name, help=text)
        action.add_argument("id", help="site id (see `sfumato sites list`)")
    strength = sub.add_parser("strength", help="set a site's strength ('default': the global)")
    strength.add_argument("id", help="site id, or 'all' for the global default")
    strength.add_argument("value", help="low, default, high or a number")
    add = sub.add_parser("add", help="add a custom site (any image upload to its hosts)")
    add.add_argument("id", help="short id, e.g. mysite")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument(
        "--host", action="append", required=True, dest="hosts", help="host name (repeatable)"
    )
    add.add_argument("--disabled", action="store_true", help="add without enabling it")
    remove = sub.add_parser("remove", help="remove a custom site")
    remove.add_argument("id")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxy.live_settings import builtin_sites

    builtin = builtin_sites()
    try:
        store = SettingsStore.open(database_path(resolve_data_dir(args.data_dir)))
    except StoreUnavailable as exc:
        print(f"sfumato sites: {runnable(str(exc))}")
        return 1
    try:
        action = args.action or "list"
        if action == "enable" or action == "disable":
            store.set_site(args.id, builtin, enabled=action == "enable")
        elif action == "strength":
            if args.id == "all":
                store.update_defaults(strength=args.value)
            elif args.value == "default":
                store.set_site(args.id, builtin, clear_strength=True)
            else:
                store.set_site(args.id, builtin, strength=args.value)
        elif action == "add":
            store.add_custom_site(
                args.id, args.name, args.hosts, builtin, enabled=not args.disabled
            )
        elif action == "remove":
            store.delete_custom_site(args.id, builtin)
        sites = store.sites(builtin)
        defaults = store.defaults()
    except (SettingsError, NotFound, Conflict) as exc:
        print(f"sfumato sites: {runnable(str(exc))}")
        return 1
    finally:
        store.close()
    if action == "list" and getattr(args, "json", False):
        print(json.dumps({"sites": [s.to_json() for s in sites], "defaults": defaults.__dict__}))
        return 0
    print(f"{'ID':<14}  {'PROTECTED':<9}  {'STRENGTH':<10}  NAME")
    for s in sites:
        strength_text = s.strength or f"({defaults.strength})"
        kind = "" if not s.custom else f"  [custom: {', '.join(s.hosts)}]"
        print(f"{s.id:<14}  {'yes' if s.enabled else 'no':<9}  {strength_text:<10}  {s.name}{kind}")
    return 0
