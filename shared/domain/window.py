"""Calling-window arithmetic: when an attempt may start.

A campaign's window is ``[start_at, end_at)``. With ``repeat_daily`` (the campaign's
``transfer_next_day``) it repeats as ``[start_at + k*24h, end_at + k*24h)`` for
``k = 0, 1, 2, ...``. A window longer than 24 hours overlaps the next day's
occurrence; an instant is inside the window when it is inside any occurrence (the
union), so such a window never closes once opened.

Everything is plain UTC arithmetic (no DST): inputs with any offset are converted to
UTC, naive datetimes are refused, and ``now`` is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)


def to_utc(at: datetime) -> datetime:
    """Return ``at`` converted to UTC; raise ``ValueError`` if it is naive."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware: {at.isoformat()}")
    return at.astimezone(UTC)


def day_of(at: datetime) -> str:
    """Return the UTC calendar day of ``at`` as ``YYYY-MM-DD``."""
    return to_utc(at).date().isoformat()


@dataclass(frozen=True)
class CallingWindow:
    """The hours in which attempts of one campaign may start (start inclusive, end exclusive)."""

    start_at: datetime
    end_at: datetime
    repeat_daily: bool

    def __post_init__(self) -> None:
        start, end = to_utc(self.start_at), to_utc(self.end_at)
        if end <= start:
            raise ValueError("end_at must be after start_at")
        # Frozen dataclass: normalise the stored values to UTC once.
        object.__setattr__(self, "start_at", start)
        object.__setattr__(self, "end_at", end)

    def _occurrence(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The latest-starting occurrence that starts at or before ``now``, if any."""
        if now < self.start_at:
            return None
        k = (now - self.start_at) // DAY if self.repeat_daily else 0
        shift = DAY * k
        return self.start_at + shift, self.end_at + shift

    def current(self, now: datetime) -> tuple[datetime, datetime] | None:
        """Return the occurrence ``(start, end)`` containing ``now``, or ``None``.

        When occurrences overlap (a window longer than 24 h), the latest-starting one
        is returned; the next occurrence is already open at its end.
        """
        now = to_utc(now)
        occurrence = self._occurrence(now)
        if occurrence is None or now >= occurrence[1]:
            return None
        return occurrence

    def contains(self, now: datetime) -> bool:
        """Return whether an attempt may start at ``now``."""
        return self.current(now) is not None

    def closes_at(self, now: datetime) -> datetime | None:
        """Return the end of the occurrence containing ``now``, or ``None`` if outside."""
        occurrence = self.current(now)
        return None if occurrence is None else occurrence[1]

    def next_open(self, now: datetime) -> datetime | None:
        """Return the first instant at or after ``now`` inside the window, or ``None``.

        That is ``now`` (in UTC) when inside, else the start of the next occurrence;
        ``None`` when the window does not repeat and ``now`` is at or after ``end_at``.
        """
        now = to_utc(now)
        if now < self.start_at:
            return self.start_at
        if self.contains(now):
            return now
        if not self.repeat_daily:
            return None
        return self.start_at + DAY * ((now - self.start_at) // DAY + 1)

    def has_ended(self, now: datetime) -> bool:
        """Return whether the window will never open again at or after ``now``."""
        return not self.repeat_daily and to_utc(now) >= self.end_at
