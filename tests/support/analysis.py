"""Facts derived from the simulated provider's record of every dial attempt."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from shared.storage.mongo import Database

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    within: float,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``done(value)``, failing after ``within`` wall seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        await asyncio.sleep(0.05)


async def dials(db: Database, campaign_uuid: str) -> list[dict[str, Any]]:
    return [d async for d in db["sim_dials"].find({"campaign_uuid": campaign_uuid})]


def _levels(intervals: list[tuple[datetime, datetime]]) -> list[tuple[int, int]]:
    """(change, level after it) at every start (+1) and end (-1) of ``[start, end)``
    intervals, in time order; an end at t comes before a start at t."""
    points = [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals]
    points.sort(key=lambda p: (p[0], p[1]))
    level, out = 0, []
    for _, delta in points:
        level += delta
        out.append((delta, level))
    return out


def max_in_progress(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals ``[start, end)`` open at any one instant (sweep line)."""
    return max((level for _, level in _levels(intervals)), default=0)


def instants_above(intervals: list[tuple[datetime, datetime]], limit: int) -> int:
    """How many times the number of open intervals rose above ``limit``."""
    return sum(1 for delta, level in _levels(intervals) if delta > 0 and level > limit)


def duplicate_attempts(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    counts = Counter((r["call_uuid"], r["attempt"]) for r in records)
    return [k for k, n in counts.items() if n > 1]


async def campaign(db: Database, campaign_uuid: str) -> dict[str, Any]:
    doc = await db["campaigns"].find_one({"_id": campaign_uuid})
    assert doc is not None
    return doc
