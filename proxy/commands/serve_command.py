"""`sfumato serve`: run the proxy and the control API (see proxy.serve)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from proxy.data_dir import add_data_dir_argument, resolve_data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the protecting proxy and the control API",
        description="Run the HTTPS proxy that protects uploads, and the control API the browser "
        "extension uses. Loopback only unless --proxy-host says otherwise (then proxy "
        "authentication is required).",
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--proxy-host",
        default="127.0.0.1",
        help="proxy listen address (default: 127.0.0.1, this computer only)",
    )
    p.add_argument("--proxy-port", type=int, default=8080, help="proxy port (default 8080)")
    p.add_argument("--api-host", help="control API listen address (default: --proxy-host)")
    p.add_argument("--api-port", type=int, default=8765, help="control API port (default 8765)")
    p.add_argument(
        "--api-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients use to reach the API, e.g. homeserver.lan (repeatable); "
        "requests for any other name are refused",
    )
    p.add_argument(
        "-s",
        "--scripts",
        action="append",
        default=[],
        metavar="SCRIPT",
        help="an extra mitmproxy addon script (repeatable), as with mitmdump -s",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="KEY=VALUE",
        help="a mitmproxy option (repeatable), as with mitmdump --set, e.g. proxyauth=@htpasswd",
    )
    p.add_argument(
        "--model",
        help="protection model id or .onnx path (same as --set sfumato_model=...; default: "
        "$SFUMATO_MODEL, else the shipped model)",
    )
    p.add_argument(
        "--grace", type=float, default=5.0, help="seconds to finish uploads on stop (default: 5)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also log mitmproxy's events")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxy.cli import runnable
    from proxy.serve import ServeConfig, ServeError, serve
    from proxy.structured_log import configure_logging

    configure_logging(verbose=args.verbose)
    config = ServeConfig(
        data_dir=resolve_data_dir(args.data_dir),
        proxy_host=args.proxy_host,
        proxy_port=args.proxy_port,
        api_host=args.api_host,
        api_port=args.api_port,
        api_names=args.api_name,
        scripts=args.scripts,
        sets=args.sets + ([f"sfumato_model={args.model}"] if args.model else []),
        grace=args.grace,
    )
    try:
        return asyncio.run(serve(config, print_fn=lambda text: print(text, flush=True)))
    except ServeError as exc:
        print(f"sfumato serve: {runnable(str(exc))}", file=sys.stderr)
        return 2
