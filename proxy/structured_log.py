"""One JSON object per log line on stderr, with secrets scrubbed before they are written.

Code logs facts as `extra=` fields (route, status, site, sizes), never bodies. As a second line of
defence the filter masks anything that looks like a bearer token, a Sfumato token, a cookie or a
proxy credential, whatever logger (ours, mitmproxy's, aiohttp's) produced the record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[^\s,;\"']+"), r"\1[redacted]"),
    (re.compile(r"sfm_[A-Za-z0-9_-]{8,}"), "[redacted-token]"),
    (re.compile(r"(?i)((?:set-)?cookie:\s*)[^\r\n]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(proxy-authorization:\s*)[^\r\n]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(proxyauth=)\S+"), r"\1[redacted]"),
]


def scrub(text: str) -> str:
    """`text` with anything secret-looking masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(*, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Route every logger to one JSON handler on stderr; mitmproxy's chatter only with --verbose."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    quiet = logging.INFO if verbose else logging.WARNING
    for name in ("mitmproxy", "aiohttp.access", "asyncio", "hpack", "passlib"):
        logging.getLogger(name).setLevel(quiet)
