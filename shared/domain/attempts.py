"""Retry and settlement rules: what a call becomes after an attempt or a window close."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.status import RETRYABLE_OUTCOMES, CallStatus, Outcome
from shared.domain.window import CallingWindow, to_utc

#: The final call status for an unanswered attempt when no attempt is left.
_FINAL_FOR_OUTCOME: dict[Outcome, CallStatus] = {
    Outcome.ANSWERED: CallStatus.COMPLETED,
    Outcome.NO_ANSWER: CallStatus.NO_ANSWER,
    Outcome.BUSY: CallStatus.BUSY,
    Outcome.FAILED: CallStatus.FAILED,
}


def max_attempts(retry: int) -> int:
    """Return the number of attempts a call gets: the first one plus ``retry`` retries."""
    if retry < 0:
        raise ValueError("retry must not be negative")
    return 1 + retry


def attempts_remaining(attempts: int, max_attempts: int) -> int:
    """Return how many attempts are left after ``attempts`` were started (never negative)."""
    return max(0, max_attempts - attempts)


def next_attempt_at(
    ended_at: datetime, retry_interval_minutes: int, window: CallingWindow
) -> datetime | None:
    """Return when the next attempt is due, or ``None`` if no window will allow it.

    The retry is due ``retry_interval_minutes`` after the attempt ended, moved to the
    next window opening when that instant is outside the window.
    """
    return window.next_open(to_utc(ended_at) + timedelta(minutes=retry_interval_minutes))


def first_attempt_due(added_at: datetime, window: CallingWindow) -> datetime | None:
    """Return when a call added at ``added_at`` is first due, or ``None`` if never."""
    return window.next_open(added_at)


@dataclass(frozen=True)
class Settlement:
    """A call's status after a settlement, and when its next attempt is due (if PENDING)."""

    status: CallStatus
    next_attempt_at: datetime | None


def settle_attempt(
    *,
    outcome: Outcome,
    attempts: int,
    max_attempts: int,
    ended_at: datetime,
    retry_interval: int,
    window: CallingWindow,
    cancel_requested: bool,
) -> Settlement:
    """Return the call's status after an attempt ended with ``outcome``.

    ``attempts`` counts the attempts started so far, the one that just ended included.
    An answered call completes. An unanswered one is canceled if a delete asked so,
    else retried while attempts remain and the window allows, else EXPIRED if attempts
    remain but the window never opens again, else it keeps the outcome as final status.
    """
    if outcome not in RETRYABLE_OUTCOMES:
        return Settlement(_FINAL_FOR_OUTCOME[outcome], None)
    if cancel_requested:
        return Settlement(CallStatus.CANCELED, None)
    if attempts_remaining(attempts, max_attempts) == 0:
        return Settlement(_FINAL_FOR_OUTCOME[outcome], None)
    due = next_attempt_at(ended_at, retry_interval, window)
    if due is None:
        return Settlement(CallStatus.EXPIRED, None)
    return Settlement(CallStatus.PENDING, due)
