"""Pairing: a short one-time code from `sfumato pair` becomes a long-lived API token.

The CLI writes only the code's hash into the database, and the server reads it back when a client
redeems it, so `sfumato pair` works whether or not the server is running and needs no token itself.
Codes are 8 characters from a 32-letter alphabet without look-alikes (40 bits), valid a few minutes
and single use; the server throttles wrong guesses. Tokens are 256-bit random strings stored only as
SHA-256 hashes and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable

from proxy.settings_store import SettingsStore

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 8
CODE_TTL = 300.0  # seconds
TOKEN_PREFIX = "sfm_"
MAX_CLIENT_NAME = 100


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_code() -> str:
    """A fresh code formatted for reading aloud: ABCD-EFGH."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(text: object) -> str | None:
    """Canonical form of a typed code (any case, spaces and dashes ignored), or None."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    raw = "".join(ch for ch in text.upper() if ch not in " -\t")
    if len(raw) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in raw):
        return None
    return raw


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue_code(store: SettingsStore, ttl: float = CODE_TTL) -> tuple[str, float]:
    """Create a code, store its hash; returns (code, expiry as a UNIX time)."""
    code = new_code()
    expires = store.add_pairing_code(hash_secret(normalize_code(code) or ""), ttl)
    return code, expires


def redeem_code(store: SettingsStore, code: object, client_name: str) -> str | None:
    """Exchange a valid code for a new client token (None if the code is wrong or used)."""
    canonical = normalize_code(code)
    if canonical is None or not store.consume_pairing_code(hash_secret(canonical)):
        return None
    token = new_token()
    store.add_client(client_name, hash_secret(token))
    return token


def find_client(store: SettingsStore, token: str) -> int | None:
    """The id of the active client owning `token`, comparing every stored hash in constant time."""
    presented = hash_secret(token)
    found: int | None = None
    for client_id, stored in store.active_token_hashes():
        if hmac.compare_digest(presented, stored):
            found = client_id  # no early exit: the loop's duration does not depend on the match
    return found


class PairingThrottle:
    """At most `max_failures` wrong codes per `window` seconds, counted globally.

    Global rather than per address: every client of a loopback server has the same address, and a
    global budget bounds any guesser to a handful of tries per minute against 2^40 codes.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._failures and self._failures[0] <= now - self.window:
            self._failures.popleft()

    def retry_after(self) -> float:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        now = self.clock()
        self._expire(now)
        if len(self._failures) < self.max_failures:
            return 0.0
        return max(0.0, self._failures[0] + self.window - now)

    def failed(self) -> None:
        self._failures.append(self.clock())
