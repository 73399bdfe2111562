"""`sfumato inspect`: does a file carry the Sfumato marker and the "no AI training" reservation?"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="show whether files carry the Sfumato marker and the AI-training reservation",
        description="Read each file's XMP: the Sfumato marker (model, strength, date), whether "
        "it matches the file's pixels (a marker kept by an editor after changes, or copied "
        "from another file, does not), and the IPTC plus:DataMining reservation. Exit status 1 "
        "if a file cannot be read.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)


def inspect_file(path: Path) -> dict:
    """What `sfumato inspect` reports for one file."""
    from perturb import check_marker, has_ai_reservation, sniff_format

    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read: {exc.strerror or exc}"}
    check = check_marker(data)
    marker = check.marker
    entry: dict = {
        "file": str(path),
        "format": sniff_format(data),
        "protected": check.protected,
        "marker": check.status,
        "ai_training_reserved": has_ai_reservation(data),
        "model": None,
        "model_version": None,
        "strength": None,
        "date": None,
    }
    if marker:
        entry.update(
            model=marker.model_id,
            model_version=marker.model_version or None,
            strength=marker.strength if math.isfinite(marker.strength) else None,
            date=marker.date or None,
        )
    return entry


def describe(entry: dict) -> str:
    if "error" in entry:
        return f"{entry['file']}: {entry['error']}"
    reserved = "yes" if entry["ai_training_reserved"] else "no"
    version = f" {entry['model_version']}" if entry["model_version"] else ""
    strength = "?" if entry["strength"] is None else f"{entry['strength']:g}"
    details = (f"model {entry['model']}{version}, strength {strength}, "
               f"{entry['date'] or 'undated'}")
    what = {
        "matches": f"protected by Sfumato ({details})",
        "pixels-changed": "marker present but the pixels were changed after protection: "
        "not protected",
        "no-digest": "marker present but it does not vouch for the pixels (written by an "
        "older Sfumato): not protected",
        "unreadable": "marker present but the pixels cannot be decoded to check it: "
        "not protected",
    }.get(entry.get("marker", ""), "not protected by Sfumato")
    kind = entry["format"] or "not a supported image"
    return f"{entry['file']}: {kind}, {what}; AI training reserved: {reserved}"


def run(args: argparse.Namespace) -> int:
    entries = [inspect_file(Path(f)) for f in args.files]
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        for entry in entries:
            print(describe(entry))
    if any("error" in e for e in entries):
        if not args.json:
            print("some files could not be read", file=sys.stderr)
        return 1
    return 0
