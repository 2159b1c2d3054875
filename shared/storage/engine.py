"""What the engine reads and writes: leases, dispatch claims, settlements.

Every read is by key or by a bounded index range; every write that moves a call
between statuses also moves the campaign's ``stats`` counters in the same
transaction, so ``stats.IN_PROGRESS`` is the exact, global concurrency counter.

Multi-document writes (``update_many``) to calls or campaigns run inside
transactions only: SecantusDB (the embedded development server) can wedge when a
non-transactional ``update_many`` conflicts with a transaction on the same
documents, and the transactional form is as cheap.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError

from shared.domain.attempts import Settlement, settle_attempt
from shared.domain.messages import AttemptResult, claim_key
from shared.domain.status import CallStatus, CampaignStatus, Outcome
from shared.domain.window import CallingWindow, day_of
from shared.storage.mongo import DUPLICATE_KEY, Announce, Database, Document, in_transaction

log = structlog.get_logger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
ACTIVE = [CampaignStatus.PENDING.value, CampaignStatus.PROCESSING.value]
#: Campaigns a scheduler must own: active ones, and canceled or failed ones whose last
#: attempts are still under way (their owner recovers any whose worker dies).
OWNED = {
    "$or": [
        {"status": {"$in": ACTIVE}},
        {
            "status": {"$in": [CampaignStatus.CANCELED.value, CampaignStatus.FAILED.value]},
            "stats.IN_PROGRESS": {"$gt": 0},
        },
    ]
}


def window_of(campaign: Document) -> CallingWindow:
    return CallingWindow(campaign["start_at"], campaign["end_at"], campaign["transfer_next_day"])


@dataclass(frozen=True)
class Settled:
    """A call's new state after an attempt result was stored."""

    call_uuid: str
    campaign_uuid: str
    firm_id: str
    status: CallStatus
    next_attempt_at: datetime | None
    result: AttemptResult


class EngineStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.campaigns = db["campaigns"]
        self.calls = db["calls"]
        self.schedulers = db["schedulers"]
        self.dial_attempts = db["dial_attempts"]
        self.workers = db["workers"]

    # -- leases and membership ------------------------------------------------------
    async def heartbeat(self, scheduler_id: str, now: datetime, lease: timedelta) -> int:
        """Record that this scheduler lives; return how many schedulers live."""
        await self.schedulers.update_one(
            {"_id": scheduler_id}, {"$set": {"seen": now}}, upsert=True
        )
        return await self.schedulers.count_documents({"seen": {"$gt": now - lease}})

    async def leave(self, scheduler_id: str, campaign_uuids: Sequence[str]) -> None:
        await self.schedulers.delete_one({"_id": scheduler_id})
        for campaign_uuid in campaign_uuids:
            await self.release(scheduler_id, campaign_uuid)

    async def count_active(self) -> int:
        return await self.campaigns.count_documents(OWNED)

    async def acquire(
        self, scheduler_id: str, now: datetime, lease: timedelta, campaign_uuid: str | None = None
    ) -> Document | None:
        """Take the lease of one active campaign nobody holds (or whose lease expired)."""
        query: dict[str, Any] = {
            "$and": [OWNED, {"$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]}]
        }
        if campaign_uuid is not None:
            query["_id"] = campaign_uuid
        return await self.campaigns.find_one_and_update(
            query,
            {"$set": {"lease_owner": scheduler_id, "lease_until": now + lease}},
            return_document=ReturnDocument.AFTER,
        )

    async def renew(
        self, scheduler_id: str, campaign_uuids: Sequence[str], now: datetime, lease: timedelta
    ) -> set[str]:
        """Extend this scheduler's leases; return the campaigns it still holds."""
        held = set()
        for campaign_uuid in campaign_uuids:
            res = await self.campaigns.update_one(
                {"_id": campaign_uuid, "lease_owner": scheduler_id},
                {"$set": {"lease_until": now + lease}},
            )
            if res.matched_count:
                held.add(campaign_uuid)
        return held

    async def release(self, scheduler_id: str, campaign_uuid: str) -> None:
        await self.campaigns.update_one(
            {"_id": campaign_uuid, "lease_owner": scheduler_id},
            {"$set": {"lease_owner": None, "lease_until": None}},
        )

    # -- campaign state -------------------------------------------------------------
    async def campaign(self, campaign_uuid: str) -> Document | None:
        return await self.campaigns.find_one({"_id": campaign_uuid})

    async def set_status(
        self,
        campaign_uuid: str,
        old: CampaignStatus,
        new: CampaignStatus,
        now: datetime,
        extra_filter: dict[str, Any] | None = None,
        announce: Announce | None = None,
    ) -> bool:
        """Move the campaign from ``old`` to ``new`` (and announce it in the same transaction)."""

        async def work(s: AsyncClientSession) -> bool:
            res = await self.campaigns.update_one(
                {"_id": campaign_uuid, "status": old.value, **(extra_filter or {})},
                {"$set": {"status": new.value, "updated_at": now}},
                session=s,
            )
            if res.modified_count == 1 and announce is not None:
                await announce(s, new)
            return res.modified_count == 1

        done: bool = await in_transaction(self.db, work)
        return done

    # -- dispatch -------------------------------------------------------------------
    async def first_attempts(
        self, campaign_uuid: str, from_seq: int, to_seq: int
    ) -> list[Document]:
        """Calls in ``[from_seq, to_seq)`` (bounded range); the caller keeps the PENDING ones."""
        cursor = self.calls.find(
            {"campaign_uuid": campaign_uuid, "seq": {"$gte": from_seq, "$lt": to_seq}},
            {"_id": 1, "seq": 1, "status": 1, "attempts": 1, "next_attempt_at": 1},
        ).sort("seq", 1)
        return [d async for d in cursor]

    async def lowest_pending_seq(self, campaign_uuid: str) -> int | None:
        """The first PENDING call's ``seq`` (one read of the ``(campaign, status, seq)`` index)."""
        doc = await self.calls.find_one(
            {"campaign_uuid": campaign_uuid, "status": CallStatus.PENDING.value},
            {"seq": 1},
            sort=[("seq", 1)],
        )
        return None if doc is None else int(doc["seq"])

    async def waiting_retries(self, campaign_uuid: str) -> int:
        """How many calls wait for a retry (a count over the ``retry_at`` index)."""
        return await self.calls.count_documents(
            {"campaign_uuid": campaign_uuid, "retry_at": {"$gte": EPOCH, "$lt": FAR_FUTURE}}
        )

    async def due_retries(self, campaign_uuid: str, now: datetime, limit: int) -> list[Document]:
        """Retries due by ``now`` (only calls waiting for a retry carry ``retry_at``)."""
        cursor = (
            self.calls.find(
                # Both bounds: with only ``$lte`` the embedded server walks the calls without one.
                {"campaign_uuid": campaign_uuid, "retry_at": {"$gte": EPOCH, "$lte": now}},
                {"_id": 1, "seq": 1, "status": 1, "attempts": 1, "next_attempt_at": 1},
            )
            .sort("retry_at", 1)
            .limit(limit)
        )
        return [d async for d in cursor]

    async def claim(
        self,
        campaign: Document,
        seqs: Sequence[int],
        now: datetime,
        attempt_lease: timedelta,
        announce: Announce | None = None,
    ) -> tuple[list[Document], bool]:
        """Atomically reserve slots and move the chosen PENDING calls to IN_PROGRESS.

        Returns the claimed call documents (with their new attempt number) and whether
        the slots could be reserved at all. Calls that stopped being PENDING meanwhile
        (deleted, claimed elsewhere) are skipped and their slots released in the same
        transaction. ``announce`` stores the dial commands with the claim.
        """
        if not seqs:
            return [], True
        campaign_uuid, speed, k = campaign["_id"], campaign["speed"], len(seqs)
        token = uuid.uuid4().hex

        async def work(s: AsyncClientSession) -> tuple[list[Document], bool]:
            reserved = await self.campaigns.find_one_and_update(
                {
                    "_id": campaign_uuid,
                    "status": CampaignStatus.PROCESSING.value,
                    "stats.IN_PROGRESS": {"$lte": speed - k},
                },
                {"$inc": {"stats.IN_PROGRESS": k, "stats.PENDING": -k}},
                session=s,
                projection={"_id": 1},
            )
            if reserved is None:
                return [], False
            res = await self.calls.update_many(
                _calls_at(campaign_uuid, CallStatus.PENDING, seqs),
                {
                    "$set": {
                        "status": CallStatus.IN_PROGRESS.value,
                        "next_attempt_at": None,
                        "updated_at": now,
                        "dispatch": {
                            "token": token,
                            "claimed_at": now,
                            "deadline": now + attempt_lease,
                        },
                    },
                    "$inc": {"attempts": 1},
                    "$unset": {"retry_at": ""},
                    "$addToSet": {"days": day_of(now)},
                },
                session=s,
            )
            if res.modified_count < k:
                missing = k - res.modified_count
                await self.campaigns.update_one(
                    {"_id": campaign_uuid},
                    {"$inc": {"stats.IN_PROGRESS": -missing, "stats.PENDING": missing}},
                    session=s,
                )
            if res.modified_count == 0:
                return [], True
            cursor = self.calls.find(
                _calls_at(campaign_uuid, CallStatus.IN_PROGRESS, seqs), session=s
            )
            mine = [d async for d in cursor if d["dispatch"]["token"] == token]
            claimed = sorted(mine, key=lambda d: int(d["seq"]))
            if claimed and announce is not None:
                await announce(s, claimed)
            return claimed, True

        claimed, reserved = await in_transaction(self.db, work)
        return claimed, reserved

    async def overdue_attempts(self, campaign_uuid: str, now: datetime) -> list[Document]:
        """IN_PROGRESS calls whose attempt lease expired (their worker died or was lost)."""
        cursor = self.calls.find(
            {"campaign_uuid": campaign_uuid, "status": CallStatus.IN_PROGRESS.value},
            {"_id": 1, "seq": 1, "attempts": 1, "dispatch": 1},
        )
        return [d async for d in cursor if d["dispatch"]["deadline"] <= now]

    async def alive(self, calls: Sequence[Document], wall: datetime) -> set[str]:
        """The calls a live worker says it is placing (its heartbeat lists them)."""
        if not calls:
            return set()
        placing: set[str] = set()
        cursor = self.workers.find(
            # Both bounds: a one-sided range walks the collection on the embedded server.
            {"alive_until": {"$gt": wall, "$lt": wall + timedelta(days=1)}},
            {"calls": 1},
        )
        async for worker in cursor:
            placing.update(worker.get("calls") or [])
        return {c["_id"] for c in calls if claim_key(c["_id"], c["attempts"]) in placing}

    async def fence(self, calls: Sequence[Document], now: datetime) -> set[str]:
        """Make sure no worker dials these overdue attempts from now on.

        Stores the (call, attempt) claim a worker takes before dialing. Returns the calls
        whose claim was stored here: no worker had taken their dial command, and a late
        copy of it will be dropped. For the others a worker took the command and then
        died or went silent.
        """
        if not calls:
            return set()
        ids = {claim_key(c["_id"], c["attempts"]): c["_id"] for c in calls}
        docs = [{"_id": k, "worker": "lease-expired", "claimed_at": now} for k in ids]
        taken: set[str] = set()
        try:
            await self.dial_attempts.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != DUPLICATE_KEY:
                    raise
                taken.add(str(docs[int(error["index"])]["_id"]))
        return {call for key, call in ids.items() if key not in taken}

    # -- settlement -----------------------------------------------------------------
    async def settle(
        self,
        results: Sequence[AttemptResult],
        now: datetime,
        announce: Announce | None = None,
    ) -> list[Settled]:
        """Store a batch of attempt results with one bulk write per collection.

        ``announce`` stores the ``call.finished`` events in the same transaction.

        Idempotent: a result whose attempt is no longer IN_PROGRESS (already stored,
        or recovered after its lease expired) changes nothing.
        """
        by_call = {r.call_uuid: r for r in results}
        by_campaign: dict[str, list[int]] = {}
        for r in by_call.values():
            by_campaign.setdefault(r.campaign_uuid, []).append(r.seq)

        async def work(s: AsyncClientSession) -> list[Settled]:
            calls: dict[str, Document] = {}
            for campaign_uuid, seqs in by_campaign.items():
                async for d in self.calls.find(
                    _calls_at(campaign_uuid, CallStatus.IN_PROGRESS, seqs),
                    {
                        "_id": 1,
                        "seq": 1,
                        "campaign_uuid": 1,
                        "attempts": 1,
                        "max_attempts": 1,
                        "cancel_requested": 1,
                    },
                    session=s,
                ):
                    calls[d["_id"]] = d
            campaign_ids = {d["campaign_uuid"] for d in calls.values()}
            campaigns = {
                d["_id"]: d
                async for d in self.campaigns.find({"_id": {"$in": list(campaign_ids)}}, session=s)
            }
            ops: list[UpdateOne] = []
            settled: list[Settled] = []
            moves: dict[str, Counter[str]] = {}
            for call_uuid, result in by_call.items():
                call = calls.get(call_uuid)
                if call is None or call["attempts"] != result.attempt:
                    continue
                campaign = campaigns[call["campaign_uuid"]]
                if not result.dialed:
                    outcome = _not_dialed(window_of(campaign), result.ended_at)
                else:
                    outcome = settle_attempt(
                        outcome=result.outcome,
                        attempts=call["attempts"],
                        max_attempts=call["max_attempts"],
                        ended_at=result.ended_at,
                        retry_interval=campaign["retry_interval"],
                        window=window_of(campaign),
                        cancel_requested=bool(call.get("cancel_requested")),
                    )
                ops.append(_settle_op(call, result, outcome.status, outcome.next_attempt_at, now))
                move = moves.setdefault(campaign["_id"], Counter())
                move[CallStatus.IN_PROGRESS.value] -= 1
                move[outcome.status.value] += 1
                settled.append(
                    Settled(
                        call_uuid,
                        campaign["_id"],
                        campaign["firm_id"],
                        outcome.status,
                        outcome.next_attempt_at,
                        result,
                    )
                )
            if ops:
                await self.calls.bulk_write(ops, ordered=False, session=s)
                for campaign_uuid, move in moves.items():
                    await self.campaigns.update_one(
                        {"_id": campaign_uuid},
                        {
                            "$inc": {f"stats.{k}": v for k, v in move.items() if v},
                            "$set": {"updated_at": now},
                        },
                        session=s,
                    )
                if announce is not None:
                    await announce(s, settled)
            return settled

        out: list[Settled] = await in_transaction(self.db, work)
        return out

    # -- window close and final statuses --------------------------------------------
    async def expire_pending(self, campaign_uuid: str, now: datetime) -> int:
        """The window closed for good: every PENDING call becomes EXPIRED."""

        async def work(s: AsyncClientSession) -> int:
            return await self._end_pending(s, campaign_uuid, CallStatus.EXPIRED, now)

        n: int = await in_transaction(self.db, work)
        return n

    async def finish(
        self,
        campaign_uuid: str,
        status: CampaignStatus,
        reason: str,
        now: datetime,
        announce: Announce | None = None,
    ) -> Document | None:
        """End an active campaign as CANCELED (operator) or FAILED (engine), with a reason.

        In one transaction: the campaign becomes final, its PENDING calls become
        CANCELED (or FAILED), and its calls in progress are marked so that the attempt
        under way is the last one (it finishes and is recorded; it is not retried).
        Returns the campaign as it was before, or ``None`` when it was not active.
        """
        call_status = CallStatus(status.value)  # CANCELED or FAILED, like the campaign
        assert call_status in (CallStatus.CANCELED, CallStatus.FAILED), status

        async def work(s: AsyncClientSession) -> Document | None:
            before = await self.campaigns.find_one_and_update(
                {"_id": campaign_uuid, "status": {"$in": ACTIVE}},
                {"$set": {"status": status.value, "status_reason": reason, "updated_at": now}},
                session=s,
            )
            if before is None:
                return None
            await self._end_pending(s, campaign_uuid, call_status, now)
            await self.calls.update_many(
                {"campaign_uuid": campaign_uuid, "status": CallStatus.IN_PROGRESS.value},
                {"$set": {"cancel_requested": True}},
                session=s,
            )
            if announce is not None:
                await announce(s, before)
            return before

        out: Document | None = await in_transaction(self.db, work)
        return out

    async def _end_pending(
        self, s: AsyncClientSession, campaign_uuid: str, status: CallStatus, now: datetime
    ) -> int:
        """Every PENDING call of the campaign gets the final ``status`` (inside ``s``).

        The counters then hold no PENDING call either: a count left over by an append
        that reserved sequence numbers and died before storing its calls is dropped
        here (from ``PENDING`` and ``total``), so such a campaign still completes.
        """
        before = await self.campaigns.find_one({"_id": campaign_uuid}, {"stats": 1}, session=s)
        pending = int((before or {}).get("stats", {}).get(CallStatus.PENDING.value, 0))
        res = await self.calls.update_many(
            {"campaign_uuid": campaign_uuid, "status": CallStatus.PENDING.value},
            {
                "$set": {"status": status.value, "next_attempt_at": None, "updated_at": now},
                "$unset": {"retry_at": ""},
            },
            session=s,
        )
        n = res.modified_count
        phantom = max(0, pending - n)
        if n or phantom:
            if phantom:
                log.warning("dropping PENDING counts without calls", count=phantom)
            await self.campaigns.update_one(
                {"_id": campaign_uuid},
                {
                    "$inc": {
                        "stats.PENDING": -n - phantom,
                        f"stats.{status.value}": n,
                        "stats.total": -phantom,
                    }
                },
                session=s,
            )
        return n

    async def carry_over(self, campaign_uuid: str, next_open: datetime, now: datetime) -> int:
        """The window closed and repeats: PENDING calls are scheduled on the next day."""

        async def work(s: AsyncClientSession) -> int:
            res = await self.calls.update_many(
                {
                    "campaign_uuid": campaign_uuid,
                    "status": CallStatus.PENDING.value,
                    "next_attempt_at": {"$lt": next_open},
                },
                {
                    "$set": {"next_attempt_at": next_open, "updated_at": now},
                    "$addToSet": {"days": day_of(next_open)},
                },
                session=s,
            )
            return res.modified_count

        n: int = await in_transaction(self.db, work)
        return n


def _not_dialed(window: CallingWindow, at: datetime) -> Settlement:
    """The window closed before the worker could dial: the attempt does not count."""
    due = window.next_open(at)
    return Settlement(CallStatus.PENDING, due) if due else Settlement(CallStatus.EXPIRED, None)


def _calls_at(campaign_uuid: str, status: CallStatus, seqs: Sequence[int]) -> Document:
    """Calls by the ``(campaign_uuid, status, seq)`` index: point reads, not a scan.

    (A filter that pairs ``_id`` with other fields is a collection scan on the embedded
    development server; this key serves as well on MongoDB.)
    """
    return {"campaign_uuid": campaign_uuid, "status": status.value, "seq": {"$in": list(seqs)}}


def _settle_op(
    call: Document,
    result: AttemptResult,
    status: CallStatus,
    due: datetime | None,
    now: datetime,
) -> UpdateOne:
    update: dict[str, Any] = {
        "$set": {"status": status.value, "next_attempt_at": due, "updated_at": now},
        "$unset": {"dispatch": ""},
    }
    if result.dialed:
        record = result.as_record()
        update["$set"]["result"] = record
        update["$push"] = {"attempt_history": record}
    else:
        update["$inc"] = {"attempts": -1}
    if due is not None:
        update["$set"]["retry_at"] = due
        update["$addToSet"] = {"days": day_of(due)}
    return UpdateOne(
        # The transaction read this call IN_PROGRESS at this attempt; a concurrent change
        # makes the write conflict and the transaction start again.
        {
            "campaign_uuid": call["campaign_uuid"],
            "status": CallStatus.IN_PROGRESS.value,
            "seq": call["seq"],
        },
        update,
    )


def lost_attempt(
    call: Document, campaign_uuid: str, now: datetime, *, taken: bool = True
) -> AttemptResult:
    """The honest record of an attempt whose worker never reported (lease expired).

    ``taken``: a worker took the dial command (and died or went silent); otherwise no
    worker took it in time and it is fenced off (see :meth:`EngineStore.fence`).
    """
    dispatch = call["dispatch"]
    reason = (
        "attempt lease expired: the dialer worker took the call and did not report"
        if taken
        else "attempt lease expired: no dialer worker took the dial command; not dialed"
    )
    return AttemptResult(
        call_uuid=call["_id"],
        campaign_uuid=campaign_uuid,
        seq=call["seq"],
        attempt=call["attempts"],
        outcome=Outcome.FAILED,
        started_at=dispatch["claimed_at"],
        ended_at=now,
        provider={"reason": reason},
    )
