"""`sfumato doctor`: check the setup and say how to fix each problem (exit 1 if any)."""

from __future__ import annotations

import argparse
import json

from proxy.data_dir import add_data_dir_argument, resolve_data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check model, ports, CA and proxy; print the fix for each problem",
        description="Check that protection can work: the model loads, the ports are free (or "
        "used by sfumato serve), the CA exists and is trusted, the proxy forwards requests.",
    )
    add_data_dir_argument(p)
    p.add_argument("--model", help="model id or .onnx path (default: $SFUMATO_MODEL or shipped)")
    p.add_argument("--proxy-host", help="proxy address (default: the running server's)")
    p.add_argument("--proxy-port", type=int, help="proxy port (default: the running server's)")
    p.add_argument("--api-port", type=int, help="API port (default: the running server's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--guide",
        action="store_true",
        help="also print the setup guide (trust the CA, route the browser, pair the extension)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxy.certificate_authority import ca_cert_path
    from proxy.doctor import addresses, run_checks
    from proxy.guidance import next_steps

    data_dir = resolve_data_dir(args.data_dir)
    where = addresses(data_dir, args.proxy_host, args.proxy_port, args.api_port)
    checks = run_checks(data_dir, args.model, where)
    problems = [c for c in checks if not c.ok]
    if args.json:
        print(json.dumps({"ok": not problems, "checks": [c.to_json() for c in checks]}))
        return 1 if problems else 0
    # The guide first (on request, or when nothing is set up yet), problems last: a failure and
    # its fix are what stays on screen.
    set_up = data_dir.is_dir()
    if args.guide or not set_up:
        print(
            next_steps(
                ca_cert_path(data_dir),
                proxy=f"{where.proxy_host}:{where.proxy_port}",
                api=f"http://{where.api_host}:{where.api_port}",
                data_dir=data_dir,
                started=set_up,
            )
        )
    for c in checks:
        if c.ok:
            print(f"ok   {c.name}: {c.detail}")
    if not problems:
        print("everything looks right")
        return 0
    print(f"\n{len(problems)} problem(s), each with its fix:")
    for c in problems:
        print(f"FAIL {c.name}: {c.detail}")
        if c.fix:
            print(f"     fix: {c.fix}")
    return 1
