"""Calls and the ``call_pages`` page index: bulk inserts, bounded page reads, safe deletes.

Deletes run in a transaction with ``status: PENDING`` in the filter and move the
campaign's ``stats`` and the page counts in the same transaction, so a call is
either deleted or claimed by the engine's dispatch, never both, and the counters
stay exact. See ``docs/DATA_MODEL.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError

from shared.domain.status import CallStatus
from shared.storage.mongo import (
    DUPLICATE_KEY,
    Announce,
    Database,
    Document,
    Recheck,
    in_transaction,
)

BLOCK = 1000
INSERT_CHUNK = 5000
#: Fields a call object never shows: the engine's bookkeeping.
CALL_PROJECTION = {"dispatch": 0, "dedup_key": 0, "retry_at": 0, "days": 0}

T = TypeVar("T")


def _key(campaign_uuid: str, status: CallStatus, seq: int) -> Document:
    """One call by the ``status_seq`` index. (The embedded development server scans the
    collection for a filter that pairs ``_id`` with other fields.)"""
    return {"campaign_uuid": campaign_uuid, "status": status.value, "seq": seq}


def page_id(campaign_uuid: str, block: int) -> str:
    return f"{campaign_uuid}:{block}"


@dataclass(frozen=True)
class RangePlan:
    """Read ``seq`` in ``[lo, hi)``, skip ``skip`` (at most one block), take the page."""

    lo: int
    hi: int
    skip: int


def plan_page(blocks: Sequence[tuple[int, int]], skip: int, limit: int) -> RangePlan | None:
    """Find the bounded ``seq`` range holding live calls number ``skip .. skip+limit``.

    ``blocks`` are ``(block, live count)`` in block order. A full block has every
    ``seq`` of its range alive, so positions inside it are exact ``seq`` values; in a
    block with holes the read skips inside that one block. ``None``: past the end.
    """
    seen = 0
    for i, (block, count) in enumerate(blocks):
        if count <= 0:
            continue
        if seen + count <= skip:
            seen += count
            continue
        offset = skip - seen
        dense = count >= BLOCK
        lo = block * BLOCK + offset if dense else block * BLOCK
        plan_skip = 0 if dense else offset
        remaining = limit - (count - offset)  # still needed after this block
        if remaining <= 0:
            return RangePlan(lo, lo + limit if dense else (block + 1) * BLOCK, plan_skip)
        hi = (block + 1) * BLOCK
        for later, later_count in blocks[i + 1 :]:
            if later_count <= 0:
                continue
            if later_count >= BLOCK and remaining <= later_count:
                hi = later * BLOCK + remaining
                break
            hi = (later + 1) * BLOCK
            remaining -= later_count
            if remaining <= 0:
                break
        return RangePlan(lo, hi, plan_skip)
    return None


@dataclass
class PhoneDelete:
    """Outcome of a delete by phone number."""

    found: bool = False
    in_progress: list[str] = field(default_factory=list)
    deleted: list[Document] = field(default_factory=list)


class CallRepository:
    """Reads and writes of ``calls`` and ``call_pages`` (deletes also move ``stats``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.col = db["calls"]
        self.pages = db["call_pages"]
        self.campaigns = db["campaigns"]

    # -- writes ----------------------------------------------------------------------------
    async def insert_many(self, docs: Sequence[Document]) -> set[int]:
        """Insert unordered in chunks; return the indices the dedup index refused.

        A duplicate on the ``dedup_key`` index means the number was already added that
        day by an earlier request; any other write error is raised.
        """
        dropped: set[int] = set()
        for start in range(0, len(docs), INSERT_CHUNK):
            chunk = docs[start : start + INSERT_CHUNK]
            try:
                await self.col.insert_many(chunk, ordered=False)
            except BulkWriteError as exc:
                for error in exc.details.get("writeErrors", []):
                    pattern = error.get("keyPattern") or {}
                    if error.get("code") != DUPLICATE_KEY or "dedup_key" not in pattern:
                        raise
                    dropped.add(start + int(error["index"]))
        return dropped

    async def inc_pages(
        self,
        campaign_uuid: str,
        seqs: Iterable[int],
        sign: int = 1,
        session: AsyncClientSession | None = None,
    ) -> None:
        """Move the live counts of the blocks holding ``seqs`` (one bulk write)."""
        per_block = Counter(seq // BLOCK for seq in seqs)
        if not per_block:
            return
        ops = [
            UpdateOne(
                {"_id": page_id(campaign_uuid, block)},
                {
                    "$inc": {"count": sign * n},
                    "$setOnInsert": {"campaign_uuid": campaign_uuid, "block": block},
                },
                upsert=True,
            )
            for block, n in sorted(per_block.items())
        ]
        await self.pages.bulk_write(ops, ordered=False, session=session)

    async def _move_stats(
        self, campaign_uuid: str, status: str, n: int, now: datetime, session: AsyncClientSession
    ) -> None:
        await self.campaigns.update_one(
            {"_id": campaign_uuid},
            {"$inc": {"stats.total": -n, f"stats.{status}": -n}, "$set": {"updated_at": now}},
            session=session,
        )

    async def delete_pending(
        self, campaign_uuid: str, seq: int, now: datetime, announce: Announce | None = None
    ) -> Document | None:
        """Delete call ``seq`` if it is PENDING (atomically with the counters); else ``None``."""

        async def work(s: AsyncClientSession) -> Document | None:
            doc = await self.col.find_one_and_delete(
                _key(campaign_uuid, CallStatus.PENDING, seq),
                projection={"seq": 1, "phone_number": 1},
                session=s,
            )
            if doc is not None:
                await self._move_stats(campaign_uuid, CallStatus.PENDING.value, 1, now, s)
                await self.inc_pages(campaign_uuid, [doc["seq"]], -1, session=s)
                if announce is not None:
                    await announce(s, doc)
            return doc

        return await in_transaction(self.db, work)

    async def request_cancel(
        self, campaign_uuid: str, seq: int, now: datetime, announce: Announce | None = None
    ) -> tuple[bool, bool]:
        """Mark an IN_PROGRESS call: no attempt after the current one.

        Returns (matched, changed): a second request matches again but changes nothing.
        """

        async def work(s: AsyncClientSession) -> tuple[bool, bool]:
            res = await self.col.update_one(
                _key(campaign_uuid, CallStatus.IN_PROGRESS, seq),
                {"$set": {"cancel_requested": True, "updated_at": now}},
                session=s,
            )
            if res.modified_count == 1 and announce is not None:
                await announce(s, None)
            return res.matched_count == 1, res.modified_count == 1

        return await in_transaction(self.db, work)

    async def delete_phone(
        self, campaign_uuid: str, phone: str, now: datetime, announce: Announce | None = None
    ) -> PhoneDelete:
        """Delete every PENDING call of ``phone``; nothing at all if one is IN_PROGRESS.

        One transaction reads the number's calls and deletes the PENDING ones with the
        status in the filter. If fewer are deleted than were read as PENDING, a dispatch
        claimed one meanwhile: the transaction aborts and the check runs again.
        """

        async def work(s: AsyncClientSession) -> PhoneDelete:
            calls = [
                d
                async for d in self.col.find(
                    {"campaign_uuid": campaign_uuid, "phone_number": phone},
                    {"status": 1, "seq": 1},
                    session=s,
                )
            ]
            out = PhoneDelete(found=bool(calls))
            out.in_progress = [
                d["_id"] for d in calls if d["status"] == CallStatus.IN_PROGRESS.value
            ]
            pending = [d for d in calls if d["status"] == CallStatus.PENDING.value]
            if out.in_progress or not pending:
                return out
            res = await self.col.delete_many(
                {
                    "campaign_uuid": campaign_uuid,
                    "status": CallStatus.PENDING.value,
                    "seq": {"$in": [d["seq"] for d in pending]},
                },
                session=s,
            )
            if res.deleted_count != len(pending):
                raise Recheck
            await self._move_stats(campaign_uuid, CallStatus.PENDING.value, len(pending), now, s)
            await self.inc_pages(campaign_uuid, [d["seq"] for d in pending], -1, session=s)
            out.deleted = sorted(pending, key=lambda d: d["seq"])
            if announce is not None:
                await announce(s, out.deleted)
            return out

        return await in_transaction(self.db, work)

    # -- reads -----------------------------------------------------------------------------
    async def get(self, campaign_uuid: str, call_uuid: str) -> Document | None:
        doc = await self.col.find_one(
            {"_id": call_uuid}, {"campaign_uuid": 1, "status": 1, "seq": 1}
        )
        return doc if doc is not None and doc["campaign_uuid"] == campaign_uuid else None

    async def page_blocks(self, campaign_uuid: str) -> list[tuple[int, int]]:
        """``(block, live count)`` of every block, in order: one bounded read."""
        cursor = self.pages.find(
            {"campaign_uuid": campaign_uuid}, {"block": 1, "count": 1, "_id": 0}
        ).sort("block", 1)
        return [(int(d["block"]), int(d["count"])) async for d in cursor]

    async def read_page(
        self, campaign_uuid: str, skip: int, limit: int
    ) -> tuple[int, list[Document]]:
        """The total and one page of calls in ``seq`` order, via the page index."""
        blocks = await self.page_blocks(campaign_uuid)
        total = sum(max(count, 0) for _, count in blocks)
        plan = plan_page(blocks, skip, limit) if skip < total else None
        if plan is None:
            return total, []
        cursor = (
            self.col.find(
                {"campaign_uuid": campaign_uuid, "seq": {"$gte": plan.lo, "$lt": plan.hi}},
                CALL_PROJECTION,
            )
            .sort("seq", 1)
            .skip(plan.skip)
            .limit(limit)
        )
        return total, [d async for d in cursor]

    async def find(self, query: Document, skip: int, limit: int) -> list[Document]:
        """One page of calls matching ``query`` in ``seq`` order (served by an index)."""
        cursor = self.col.find(query, CALL_PROJECTION).sort("seq", 1).skip(skip).limit(limit)
        return [d async for d in cursor]

    async def count(self, query: Document) -> int:
        return await self.col.count_documents(query)

    async def candidates(
        self, campaign_uuid: str, *, call_uuid: str | None, phone: str | None
    ) -> list[Document]:
        """The few calls of one uuid or one phone number (point or short index read),
        with ``days`` so that the caller can apply the remaining filters itself."""
        # One key only: the embedded server scans when `_id` is paired with other fields.
        query: Document = {"campaign_uuid": campaign_uuid}
        if call_uuid is not None:
            query = {"_id": call_uuid}
        elif phone is not None:
            query["phone_number"] = phone
        projection = {k: v for k, v in CALL_PROJECTION.items() if k != "days"}
        docs = [
            d async for d in self.col.find(query, projection) if d["campaign_uuid"] == campaign_uuid
        ]
        return sorted(docs, key=lambda d: int(d["seq"]))
