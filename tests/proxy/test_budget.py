"""The global budgets and the per-upload guard: bytes are taken or refused at once, pixels wait
for room until the deadline, and what was taken is always given back."""

from __future__ import annotations

import threading
import time

import pytest

from proxy.uploads.body_reading import STEP, BodyGuard
from proxy.uploads.budget import Budget, Reservation
from proxy.uploads.refusal import Refusal


def test_taking_and_giving_back_tracks_the_peak() -> None:
    budget = Budget(100, "bytes", "opt")
    assert budget.try_take(60) and not budget.try_take(50) and budget.try_take(40)
    assert (budget.in_use, budget.peak) == (100, 100)
    budget.give(100)
    assert budget.in_use == 0 and budget.peak == 100


def test_hold_waits_for_room_then_holds() -> None:
    budget = Budget(100, "pixels", "sfumato_pixel_budget")
    budget.try_take(80)
    threading.Timer(0.2, budget.give, (80,)).start()
    started = time.monotonic()
    with budget.hold(50, time.monotonic() + 5):
        assert time.monotonic() - started >= 0.15 and budget.in_use == 50
    assert budget.in_use == 0


def test_hold_refuses_busy_at_the_deadline_and_oversized_at_once() -> None:
    budget = Budget(100, "pixels", "sfumato_pixel_budget")
    budget.try_take(80)
    with pytest.raises(Refusal) as busy, budget.hold(50, time.monotonic() + 0.1):
        pass
    assert (
        busy.value.code == "busy"
        and busy.value.retry_after
        and "sfumato_pixel_budget" in str(busy.value)
    )
    with pytest.raises(Refusal) as big, budget.hold(101, None):
        pass
    assert big.value.code == "image-too-large"
    assert budget.in_use == 80


def test_a_reservation_grows_and_is_given_back_once() -> None:
    budget = Budget(10, "bytes", "opt")
    reservation = Reservation(budget)
    assert reservation.grow_to(4) and reservation.grow_to(3) and reservation.grow_to(10)
    assert not reservation.grow_to(11) and budget.in_use == 10
    reservation.release()
    reservation.release()
    assert budget.in_use == 0


def _guard(limit: int, budget: Budget) -> BodyGuard:
    return BodyGuard(limit, Reservation(budget), answer=lambda refusal: None)  # type: ignore[arg-type,return-value]


def test_the_guard_refuses_over_the_limit_and_remembers() -> None:
    budget = Budget(100 * STEP, "upload bytes", "sfumato_buffer_budget")
    guard = _guard(3 * STEP, budget)
    assert guard.admit(1) is None and budget.in_use == STEP  # taken in steps
    refusal = guard.admit(3 * STEP + 1)
    assert refusal is not None and refusal.code == "body-too-large"
    assert guard.admit(10) is refusal


def test_the_guard_refuses_busy_when_the_budget_is_spent() -> None:
    budget = Budget(2 * STEP, "upload bytes", "sfumato_buffer_budget")
    first, second = _guard(10 * STEP, budget), _guard(10 * STEP, budget)
    assert first.admit(STEP + 1) is None  # rounded up to two steps: the whole budget
    assert second.admit(1) is not None and second.refusal.code == "busy"
    first.reservation.release()
    assert _guard(10 * STEP, budget).admit(2 * STEP) is None
