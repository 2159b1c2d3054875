"""Calling-window arithmetic: edges, midnight, repetition, offsets, and an oracle."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.window import CallingWindow, day_of

PROPERTIES = settings(derandomize=True, max_examples=200, deadline=None, database=None)
US = timedelta(microseconds=1)
H = timedelta(hours=1)
D = timedelta(days=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


DAYTIME = CallingWindow(utc("2026-01-15T09:00"), utc("2026-01-15T18:00"), repeat_daily=False)
DAYTIME_DAILY = CallingWindow(utc("2026-01-15T09:00"), utc("2026-01-15T18:00"), repeat_daily=True)
NIGHT = CallingWindow(utc("2026-01-15T22:00"), utc("2026-01-16T02:00"), repeat_daily=False)
NIGHT_DAILY = CallingWindow(utc("2026-01-15T22:00"), utc("2026-01-16T02:00"), repeat_daily=True)


@pytest.mark.parametrize("window", [DAYTIME, DAYTIME_DAILY])
@pytest.mark.parametrize(
    ("now", "inside"),
    [
        ("2026-01-15T08:59:59.999999", False),
        ("2026-01-15T09:00", True),
        ("2026-01-15T12:00", True),
        ("2026-01-15T17:59:59.999999", True),
        ("2026-01-15T18:00", False),
        ("2026-01-15T23:00", False),
    ],
)
def test_first_day_edges(window: CallingWindow, now: str, inside: bool) -> None:
    assert window.contains(utc(now)) is inside
    assert (window.current(utc(now)) is not None) is inside
    expected_close = utc("2026-01-15T18:00") if inside else None
    assert window.closes_at(utc(now)) == expected_close


def test_current_returns_the_occurrence() -> None:
    assert DAYTIME.current(utc("2026-01-15T09:00")) == (
        utc("2026-01-15T09:00"),
        utc("2026-01-15T18:00"),
    )
    assert DAYTIME_DAILY.current(utc("2026-01-18T17:00")) == (
        utc("2026-01-18T09:00"),
        utc("2026-01-18T18:00"),
    )


def test_next_open_before_inside_and_after() -> None:
    assert DAYTIME.next_open(utc("2026-01-14T20:00")) == utc("2026-01-15T09:00")
    assert DAYTIME.next_open(utc("2026-01-15T10:00")) == utc("2026-01-15T10:00")
    assert DAYTIME.next_open(utc("2026-01-15T18:00")) is None
    assert DAYTIME.next_open(utc("2026-03-01T10:00")) is None


def test_repeat_daily_opens_on_later_days() -> None:
    assert DAYTIME_DAILY.next_open(utc("2026-01-15T18:00")) == utc("2026-01-16T09:00")
    assert DAYTIME_DAILY.next_open(utc("2026-01-16T08:59")) == utc("2026-01-16T09:00")
    assert DAYTIME_DAILY.next_open(utc("2026-01-18T19:00")) == utc("2026-01-19T09:00")
    assert DAYTIME_DAILY.next_open(utc("2026-01-20T09:00")) == utc("2026-01-20T09:00")
    assert DAYTIME_DAILY.contains(utc("2026-02-20T17:59:59.999999"))
    assert not DAYTIME_DAILY.contains(utc("2026-02-20T18:00"))
    assert DAYTIME_DAILY.closes_at(utc("2026-02-20T10:00")) == utc("2026-02-20T18:00")


def test_repetition_never_reaches_before_start() -> None:
    assert not DAYTIME_DAILY.contains(utc("2026-01-14T10:00"))
    assert DAYTIME_DAILY.next_open(utc("2026-01-14T10:00")) == utc("2026-01-15T09:00")


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        ("2026-01-15T21:59:59.999999", False),
        ("2026-01-15T22:00", True),
        ("2026-01-15T23:59:59.999999", True),
        ("2026-01-16T00:00", True),
        ("2026-01-16T01:59:59.999999", True),
        ("2026-01-16T02:00", False),
        ("2026-01-16T12:00", False),
    ],
)
def test_across_midnight(now: str, inside: bool) -> None:
    for window in (NIGHT, NIGHT_DAILY):
        assert window.contains(utc(now)) is inside
    if inside:
        assert NIGHT.closes_at(utc(now)) == utc("2026-01-16T02:00")


def test_across_midnight_repeating() -> None:
    assert NIGHT_DAILY.contains(utc("2026-01-17T01:00"))
    assert NIGHT_DAILY.current(utc("2026-01-17T01:00")) == (
        utc("2026-01-16T22:00"),
        utc("2026-01-17T02:00"),
    )
    assert NIGHT_DAILY.next_open(utc("2026-01-16T02:00")) == utc("2026-01-16T22:00")
    assert NIGHT.next_open(utc("2026-01-16T02:00")) is None


def test_not_repeating_after_end() -> None:
    assert DAYTIME.has_ended(utc("2026-01-15T18:00"))
    assert not DAYTIME.has_ended(utc("2026-01-15T17:59:59.999999"))
    assert not DAYTIME.has_ended(utc("2026-01-01T00:00"))
    assert DAYTIME.closes_at(utc("2026-01-15T18:00")) is None
    assert DAYTIME.current(utc("2026-01-16T10:00")) is None
    assert not DAYTIME_DAILY.has_ended(utc("2030-01-01T00:00"))


def test_offsets_are_converted_to_utc() -> None:
    plus5 = timezone(timedelta(hours=5))
    minus3 = timezone(timedelta(hours=-3))
    window = CallingWindow(
        datetime(2026, 1, 15, 14, 0, tzinfo=plus5),  # 09:00Z
        datetime(2026, 1, 15, 15, 0, tzinfo=minus3),  # 18:00Z
        repeat_daily=False,
    )
    assert window == DAYTIME
    assert window.start_at.tzinfo is UTC
    assert window.end_at.utcoffset() == timedelta(0)
    assert window.contains(datetime(2026, 1, 15, 6, 0, tzinfo=minus3))  # 09:00Z
    assert not window.contains(datetime(2026, 1, 15, 23, 0, tzinfo=plus5))  # 18:00Z
    opened = window.next_open(datetime(2026, 1, 15, 10, 0, tzinfo=plus5))  # 05:00Z
    assert opened == utc("2026-01-15T09:00")
    assert opened is not None
    assert opened.utcoffset() == timedelta(0)
    inside = window.next_open(datetime(2026, 1, 15, 12, 0, tzinfo=minus3))
    assert inside == utc("2026-01-15T15:00")
    assert inside is not None
    assert inside.utcoffset() == timedelta(0)


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("first_day", "utc_open", "utc_close", "local_open_after"),
    [
        # Spring forward on 2026-03-29: CET (+1) becomes CEST (+2).
        (date(2026, 3, 27), "08:00", "17:00", 10),
        # Fall back on 2026-10-25: CEST (+2) becomes CET (+1).
        (date(2026, 10, 23), "07:00", "16:00", 8),
    ],
)
def test_repetition_is_24_utc_hours_across_a_dst_switch(
    first_day: date, utc_open: str, utc_close: str, local_open_after: int
) -> None:
    """09:00-18:00 Berlin time, given just before a switch, repeats at the same UTC hours."""
    start = datetime.combine(first_day, time(9), tzinfo=BERLIN)
    window = CallingWindow(start, start + 9 * H, repeat_daily=True)
    assert window.start_at == utc(f"{first_day}T{utc_open}")
    for k in range(5):  # two days before the switch, its day, two days after
        day = (first_day + k * D).isoformat()
        opens, closes = utc(f"{day}T{utc_open}"), utc(f"{day}T{utc_close}")
        assert window.next_open(opens - 3 * H) == opens
        assert window.current(opens) == (opens, closes)
        assert not window.contains(opens - US)
        assert not window.contains(closes)
        assert opens - window.start_at == k * D  # exactly k * 24 h of elapsed time
    after = first_day + 4 * D
    # After the switch the window opens at another local hour than the 09:00 given.
    local_nine = datetime.combine(after, time(9), tzinfo=BERLIN)
    assert window.contains(local_nine) is (local_open_after < 9)
    opened = window.next_open(datetime.combine(after, time(6), tzinfo=BERLIN))
    assert opened is not None
    assert opened.astimezone(BERLIN).hour == local_open_after
    assert opened.utcoffset() == timedelta(0)


def test_naive_and_empty_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CallingWindow(datetime(2026, 1, 15, 9), utc("2026-01-15T18:00"), repeat_daily=False)
    with pytest.raises(ValueError, match="after"):
        CallingWindow(utc("2026-01-15T18:00"), utc("2026-01-15T18:00"), repeat_daily=True)
    with pytest.raises(ValueError, match="after"):
        CallingWindow(utc("2026-01-15T18:00"), utc("2026-01-15T09:00"), repeat_daily=False)
    with pytest.raises(ValueError, match="timezone-aware"):
        DAYTIME.contains(datetime(2026, 1, 15, 10))


@pytest.mark.parametrize("hours", [24, 30, 72])
def test_window_of_a_day_or_more_never_closes_when_repeating(hours: int) -> None:
    start = utc("2026-01-15T09:00")
    window = CallingWindow(start, start + hours * H, repeat_daily=True)
    for offset in range(0, 24 * 10):
        now = start + offset * H + timedelta(minutes=17)
        assert window.contains(now)
        assert window.next_open(now) == now
        closes = window.closes_at(now)
        assert closes is not None
        assert closes > now
        assert window.contains(closes)  # the next occurrence is already open
    assert window.next_open(start - US) == start


def test_window_longer_than_a_day_reports_the_latest_occurrence() -> None:
    start = utc("2026-01-15T09:00")
    window = CallingWindow(start, start + 30 * H, repeat_daily=True)
    assert window.current(start + 25 * H) == (start + D, start + D + 30 * H)


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (datetime(2026, 1, 15, 0, 0, tzinfo=UTC), "2026-01-15"),
        (datetime(2026, 1, 15, 23, 59, 59, 999999, tzinfo=UTC), "2026-01-15"),
        (datetime(2026, 1, 15, 23, 30, tzinfo=timezone(timedelta(hours=-2))), "2026-01-16"),
        (datetime(2026, 1, 16, 3, 0, tzinfo=timezone(timedelta(hours=5))), "2026-01-15"),
    ],
)
def test_day_of(at: datetime, day: str) -> None:
    assert day_of(at) == day


def test_day_of_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        day_of(datetime(2026, 1, 15))


# --- properties against a brute-force oracle ------------------------------------------

BASE = utc("2026-01-01T00:00")


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    start = BASE + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    length = timedelta(microseconds=draw(st.integers(1, 3 * 24 * 3600 * 10**6)))
    return CallingWindow(start, start + length, repeat_daily=draw(st.booleans()))


instants = st.integers(-2 * 24 * 3600, 12 * 24 * 3600).map(lambda s: BASE + timedelta(seconds=s))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def occurrences(window: CallingWindow, until: datetime) -> list[tuple[datetime, datetime]]:
    """Every occurrence that starts before ``until`` (plus one), enumerated naively."""
    length = window.end_at - window.start_at
    result = [(window.start_at, window.start_at + length)]
    while window.repeat_daily and result[-1][0] <= until:
        start = result[-1][0] + D
        result.append((start, start + length))
    return result


def oracle_contains(window: CallingWindow, now: datetime) -> bool:
    return any(start <= now < end for start, end in occurrences(window, now))


def oracle_next_open(window: CallingWindow, now: datetime) -> datetime | None:
    candidates = [max(now, start) for start, end in occurrences(window, now) if end > now]
    return min(candidates, default=None)


@PROPERTIES
@given(windows(), instants, offsets)
def test_matches_oracle(window: CallingWindow, now: datetime, tz: timezone) -> None:
    local_now = now.astimezone(tz)
    assert window.contains(local_now) is oracle_contains(window, now)
    assert window.next_open(local_now) == oracle_next_open(window, now)


@PROPERTIES
@given(windows(), instants)
def test_next_open_is_inside_and_not_before_now(window: CallingWindow, now: datetime) -> None:
    opened = window.next_open(now)
    assert (opened is None) is window.has_ended(now)
    if opened is not None:
        assert opened >= now
        assert window.contains(opened)
        assert opened == now or not window.contains(opened - US)
    if window.contains(now):
        assert opened == now


@PROPERTIES
@given(windows(), instants)
def test_current_is_consistent(window: CallingWindow, now: datetime) -> None:
    occurrence = window.current(now)
    assert (occurrence is not None) is window.contains(now)
    if occurrence is not None:
        start, end = occurrence
        assert start <= now < end
        assert end - start == window.end_at - window.start_at
        assert window.closes_at(now) == end
        assert (start - window.start_at) % D == timedelta(0)
    else:
        assert window.closes_at(now) is None
