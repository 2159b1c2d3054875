"""Retry timing and the settlement of an attempt or of a window close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.attempts import (
    Settlement,
    attempts_remaining,
    first_attempt_due,
    max_attempts,
    next_attempt_at,
    settle_attempt,
)
from shared.domain.status import CallStatus, Outcome
from shared.domain.window import CallingWindow

PROPERTIES = settings(derandomize=True, max_examples=200, deadline=None, database=None)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


ONCE = CallingWindow(utc("2026-01-15T09:00"), utc("2026-01-15T18:00"), repeat_daily=False)
DAILY = CallingWindow(utc("2026-01-15T09:00"), utc("2026-01-15T18:00"), repeat_daily=True)


@pytest.mark.parametrize(("retry", "expected"), [(0, 1), (1, 2), (2, 3), (10, 11)])
def test_max_attempts(retry: int, expected: int) -> None:
    assert max_attempts(retry) == expected


def test_max_attempts_refuses_negative_retry() -> None:
    with pytest.raises(ValueError, match="negative"):
        max_attempts(-1)


@pytest.mark.parametrize(
    ("attempts", "maximum", "left"),
    [(0, 3, 3), (1, 3, 2), (2, 3, 1), (3, 3, 0), (4, 3, 0), (0, 1, 1), (1, 1, 0)],
)
def test_attempts_remaining(attempts: int, maximum: int, left: int) -> None:
    assert attempts_remaining(attempts, maximum) == left


@pytest.mark.parametrize(
    ("window", "ended", "interval", "due"),
    [
        (ONCE, "2026-01-15T10:00", 30, "2026-01-15T10:30"),
        (ONCE, "2026-01-15T17:29:59.999999", 30, "2026-01-15T17:59:59.999999"),
        (ONCE, "2026-01-15T17:30", 30, None),  # due exactly at end_at
        (ONCE, "2026-01-15T17:45", 30, None),
        (ONCE, "2026-01-15T08:00", 30, "2026-01-15T09:00"),  # before the window opens
        (DAILY, "2026-01-15T17:30", 30, "2026-01-16T09:00"),
        (DAILY, "2026-01-15T17:45", 30, "2026-01-16T09:00"),
        (DAILY, "2026-01-15T17:45", 10080, "2026-01-22T17:45"),  # a week later, inside
        (DAILY, "2026-01-15T17:45", 60 * 24 - 30, "2026-01-16T17:15"),
    ],
)
def test_next_attempt_at(window: CallingWindow, ended: str, interval: int, due: str | None) -> None:
    assert next_attempt_at(utc(ended), interval, window) == (utc(due) if due else None)


def test_next_attempt_at_converts_offsets() -> None:
    ended = datetime(2026, 1, 15, 15, 0, tzinfo=timezone(timedelta(hours=5)))  # 10:00Z
    assert next_attempt_at(ended, 30, ONCE) == utc("2026-01-15T10:30")


@pytest.mark.parametrize(
    ("window", "added", "due"),
    [
        (ONCE, "2026-01-10T12:00", "2026-01-15T09:00"),
        (ONCE, "2026-01-15T09:00", "2026-01-15T09:00"),
        (ONCE, "2026-01-15T12:34", "2026-01-15T12:34"),
        (ONCE, "2026-01-15T18:00", None),
        (DAILY, "2026-01-15T18:00", "2026-01-16T09:00"),
        (DAILY, "2026-01-17T07:00", "2026-01-17T09:00"),
    ],
)
def test_first_attempt_due(window: CallingWindow, added: str, due: str | None) -> None:
    assert first_attempt_due(utc(added), window) == (utc(due) if due else None)


# --- settle_attempt: every outcome x attempts left x cancel x window state --------------

#: Window states for an attempt that ended at 17:00 or 17:45 with a 30-minute interval.
WINDOW_STATES: dict[str, tuple[CallingWindow, datetime, datetime | None]] = {
    # name: (window, ended_at, when the retry is due if one is allowed)
    "open": (ONCE, utc("2026-01-15T17:00"), utc("2026-01-15T17:30")),
    "open-repeating": (DAILY, utc("2026-01-15T17:00"), utc("2026-01-15T17:30")),
    "next-day": (DAILY, utc("2026-01-15T17:45"), utc("2026-01-16T09:00")),
    "closed": (ONCE, utc("2026-01-15T17:45"), None),
}
FINAL_OF = {
    Outcome.NO_ANSWER: CallStatus.NO_ANSWER,
    Outcome.BUSY: CallStatus.BUSY,
    Outcome.FAILED: CallStatus.FAILED,
}


def expected_settlement(
    outcome: Outcome, left: int, cancel: bool, due: datetime | None
) -> Settlement:
    """The contract's rules, written out case by case."""
    if outcome is Outcome.ANSWERED:
        return Settlement(CallStatus.COMPLETED, None)
    if cancel:
        return Settlement(CallStatus.CANCELED, None)
    if left == 0:
        return Settlement(FINAL_OF[outcome], None)
    if due is None:
        return Settlement(CallStatus.EXPIRED, None)
    return Settlement(CallStatus.PENDING, due)


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize(("attempts", "maximum"), [(1, 1), (3, 3), (1, 3), (2, 3), (5, 3)])
@pytest.mark.parametrize("cancel", [False, True])
@pytest.mark.parametrize("state", list(WINDOW_STATES))
def test_settle_attempt(
    outcome: Outcome, attempts: int, maximum: int, cancel: bool, state: str
) -> None:
    window, ended_at, due = WINDOW_STATES[state]
    settlement = settle_attempt(
        outcome=outcome,
        attempts=attempts,
        max_attempts=maximum,
        ended_at=ended_at,
        retry_interval=30,
        window=window,
        cancel_requested=cancel,
    )
    left = max(0, maximum - attempts)
    assert settlement == expected_settlement(outcome, left, cancel, due)


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome.ANSWERED, CallStatus.COMPLETED),
        (Outcome.NO_ANSWER, CallStatus.NO_ANSWER),
        (Outcome.BUSY, CallStatus.BUSY),
        (Outcome.FAILED, CallStatus.FAILED),
    ],
)
def test_last_attempt_keeps_its_outcome_even_after_the_window(
    outcome: Outcome, status: CallStatus
) -> None:
    settlement = settle_attempt(
        outcome=outcome,
        attempts=2,
        max_attempts=2,
        ended_at=utc("2026-01-15T19:00"),
        retry_interval=30,
        window=ONCE,
        cancel_requested=False,
    )
    assert settlement == Settlement(status, None)


# --- properties ---------------------------------------------------------------------------

BASE = utc("2026-01-01T00:00")


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    start = BASE + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    length = timedelta(seconds=draw(st.integers(1, 3 * 24 * 3600)))
    return CallingWindow(start, start + length, repeat_daily=draw(st.booleans()))


instants = st.integers(-2 * 24 * 3600, 12 * 24 * 3600).map(lambda s: BASE + timedelta(seconds=s))
intervals = st.integers(1, 10080)


@PROPERTIES
@given(windows(), instants, intervals)
def test_next_attempt_is_late_enough_and_inside(
    window: CallingWindow, ended_at: datetime, interval: int
) -> None:
    due = next_attempt_at(ended_at, interval, window)
    if window.repeat_daily:
        assert due is not None
    if due is None:
        assert window.has_ended(ended_at + timedelta(minutes=interval))
    else:
        assert due >= ended_at + timedelta(minutes=interval)
        assert window.contains(due)


@PROPERTIES
@given(
    windows(),
    instants,
    intervals,
    st.sampled_from(list(Outcome)),
    st.integers(1, 11),
    st.integers(1, 11),
    st.booleans(),
)
def test_settlement_is_pending_exactly_when_a_retry_is_scheduled(
    window: CallingWindow,
    ended_at: datetime,
    interval: int,
    outcome: Outcome,
    attempts: int,
    maximum: int,
    cancel: bool,
) -> None:
    settlement = settle_attempt(
        outcome=outcome,
        attempts=attempts,
        max_attempts=maximum,
        ended_at=ended_at,
        retry_interval=interval,
        window=window,
        cancel_requested=cancel,
    )
    assert (settlement.status is CallStatus.PENDING) is (settlement.next_attempt_at is not None)
    if settlement.next_attempt_at is not None:
        assert attempts < maximum
        assert not cancel
        assert outcome is not Outcome.ANSWERED
        assert settlement.next_attempt_at >= ended_at + timedelta(minutes=interval)
        assert window.contains(settlement.next_attempt_at)
