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


#: The call status an attempt's outcome leads to when it is the last attempt.
FINAL_BY_OUTCOME = {
    "ANSWERED": "COMPLETED",
    "NO_ANSWER": "NO_ANSWER",
    "BUSY": "BUSY",
    "FAILED": "FAILED",
}


async def consistency_problems(db: Database, campaign_uuid: str) -> list[str]:
    """Every way the campaign's calls disagree with the provider's record of dials.

    Checks, per call: a final status; ``attempts`` equals its history, numbered 1..n; the
    provider dialed exactly the attempts in the history (no duplicate, none unrecorded),
    with the same outcomes; the status follows from the last outcome (or the call was
    canceled or expired); a retryable status only once attempts ran out. A dial of a
    call that no longer exists (deleted) is a problem too.
    """
    calls = [c async for c in db["calls"].find({"campaign_uuid": campaign_uuid})]
    records = await dials(db, campaign_uuid)
    by_call: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_call.setdefault(r["call_uuid"], []).append(r)
    problems = [f"dialed twice: {k}" for k in duplicate_attempts(records)]
    problems += [
        f"dialed but not stored (deleted?): {c}" for c in set(by_call) - {c["_id"] for c in calls}
    ]
    for call in calls:
        cid, status = call["_id"], call["status"]
        history = call.get("attempt_history", [])
        dialed = sorted(by_call.get(cid, []), key=lambda r: int(r["attempt"]))
        if status in ("PENDING", "IN_PROGRESS"):
            problems.append(f"{cid}: not final ({status})")
        if call["attempts"] != len(history) or [h["attempt"] for h in history] != list(
            range(1, len(history) + 1)
        ):
            problems.append(f"{cid}: attempts {call['attempts']} vs history {len(history)}")
        # A dial whose worker died mid-call has no outcome of its own; the engine recorded
        # it FAILED when it recovered the attempt. A recovered attempt that no worker took
        # was never dialed.
        stored = [
            (h["attempt"], h["outcome"])
            for h in history
            if not h["provider"].get("reason", "").endswith("not dialed")
        ]
        if [(r["attempt"], r["outcome"] or "FAILED") for r in dialed] != stored:
            problems.append(f"{cid}: dials {len(dialed)} do not match the history")
        if status in ("CANCELED", "EXPIRED"):
            continue
        if not history:
            problems.append(f"{cid}: {status} without an attempt")
            continue
        if status != FINAL_BY_OUTCOME[history[-1]["outcome"]]:
            problems.append(f"{cid}: {status} after a last outcome {history[-1]['outcome']}")
        if status != "COMPLETED" and call["attempts"] < call["max_attempts"]:
            problems.append(f"{cid}: {status} with attempts left")
    return problems
