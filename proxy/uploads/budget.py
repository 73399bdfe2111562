"""Global memory budgets: upload bytes held at once, and decoded pixels in flight.

Without them, memory grows with the number and size of concurrent uploads until the process
dies. With them, what the proxy holds is bounded by configuration: an upload that would exceed
the byte budget is refused at once with `busy` (503, Retry-After) -- waiting is not possible,
since mitmproxy keeps reading the body while a hook waits -- and an image that would exceed the
pixel budget waits in its worker for room until the upload's deadline, then is refused the same
way. An image larger than the whole pixel budget can never fit: `image-too-large`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from proxy.uploads.refusal import PROTECT_FIRST, Refusal

RETRY_AFTER_S = 5


def busy(budget: Budget) -> Refusal:
    """The refusal for a full budget."""
    return Refusal(
        "busy",
        f"Sfumato is busy: other uploads already hold the {budget.unit} it may hold at once "
        f"({budget.option})",
        "retry in a few seconds",
        retry_after=RETRY_AFTER_S,
    )


class Budget:
    """A thread-safe amount (bytes or pixels) shared by all uploads; `peak` is the most ever
    in use (the benchmark checks it against `limit`)."""

    def __init__(self, limit: int, unit: str, option: str) -> None:
        self.limit = limit
        self.unit = unit
        self.option = option
        self.in_use = 0
        self.peak = 0
        self._room = threading.Condition()

    def try_take(self, amount: int) -> bool:
        """Take `amount` if it fits now."""
        with self._room:
            if self.in_use + amount > self.limit:
                return False
            self.in_use += amount
            self.peak = max(self.peak, self.in_use)
            return True

    def give(self, amount: int) -> None:
        with self._room:
            self.in_use = max(0, self.in_use - amount)
            self._room.notify_all()

    @contextmanager
    def hold(self, amount: int, deadline: float | None) -> Iterator[None]:
        """Hold `amount` for the block, waiting for room until `deadline` (time.monotonic)."""
        if amount > self.limit:
            raise Refusal(
                "image-too-large",
                f"the image has {amount / 1e6:.1f} million {self.unit}, more than Sfumato may "
                f"hold at once ({self.limit / 1e6:.1f} million, {self.option})",
                f"downscale it, or raise {self.option}; or " + PROTECT_FIRST,
            )
        with self._room:
            while self.in_use + amount > self.limit:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise busy(self)
                self._room.wait(remaining)
            self.in_use += amount
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            self.give(amount)


class Reservation:
    """One upload's share of a budget: grows as its body is read, given back once."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.amount = 0

    def grow_to(self, amount: int) -> bool:
        """Make the share at least `amount`; False if the budget has no room for it."""
        if amount <= self.amount:
            return True
        if not self.budget.try_take(amount - self.amount):
            return False
        self.amount = amount
        return True

    def release(self) -> None:
        if self.amount:
            self.budget.give(self.amount)
            self.amount = 0
