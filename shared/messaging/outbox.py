"""Transactional outbox: a message is stored with the state change it announces.

A writer builds :class:`Entry` values, stores them with :meth:`Outbox.stage` inside the
same MongoDB transaction as the change, and after the commit hands them to
:meth:`Outbox.deliver`, which publishes them with publisher confirms and then deletes
them. The entries of one change are stored together, in one document (up to
``PER_DOCUMENT`` of them): a dispatch claim of 100 calls or a batch of 200 results
costs one insert and one delete, not one per message. If the process dies (or the
broker is away) between the commit and the delete, the entries stay in the ``outbox``
collection and a relay (:meth:`Outbox.relay_once`, run by every API and scheduler
process) publishes them once they are older than a grace period. Delivery is
therefore at least once: a message can be published twice (a relay racing a slow
writer), with the same ``message_id``; every consumer of the project is idempotent
(dial commands by (call, attempt), results by the attempt still being in progress,
campaign events by lease).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import structlog
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.messaging.envelope import Envelope
from shared.messaging.topology import event_key
from shared.metrics import metrics
from shared.storage.mongo import Database, Document

log = structlog.get_logger(__name__)

Target = Literal["events", "work"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Outbox documents published per relay round.
RELAY_BATCH = 100
#: Entries stored in one outbox document at most.
PER_DOCUMENT = 500


@dataclass(frozen=True)
class Entry:
    """One message to publish: the exchange (events or work), its routing key, the body."""

    target: Target
    routing_key: str
    envelope: Envelope

    @classmethod
    def event(cls, envelope: Envelope) -> Entry:
        assert envelope.campaign_uuid is not None
        return cls("events", event_key(envelope.type, envelope.campaign_uuid), envelope)

    @classmethod
    def work(cls, routing_key: str, envelope: Envelope) -> Entry:
        return cls("work", routing_key, envelope)

    def to_doc(self, created_at: datetime) -> Document:
        return {
            "_id": self.envelope.message_id,
            "target": self.target,
            "routing_key": self.routing_key,
            "body": self.envelope.model_dump_json(),
            "created_at": created_at,
        }

    @classmethod
    def from_doc(cls, doc: Document) -> Entry:
        return cls(doc["target"], doc["routing_key"], Envelope.model_validate_json(doc["body"]))


def entries_of(doc: Document) -> list[Entry]:
    """The entries an outbox document holds: a batch (``messages``) or a single entry."""
    if "messages" in doc:
        return [Entry.from_doc(m) for m in doc["messages"]]
    return [Entry.from_doc(doc)]


def _chunks(entries: Sequence[Entry]) -> list[Sequence[Entry]]:
    return [entries[i : i + PER_DOCUMENT] for i in range(0, len(entries), PER_DOCUMENT)]


def _batch_doc(chunk: Sequence[Entry], created_at: datetime) -> Document:
    """One document for a chunk; its ``_id`` is the first entry's message id."""
    return {
        "_id": chunk[0].envelope.message_id,
        "created_at": created_at,
        "count": len(chunk),
        "messages": [
            {k: v for k, v in e.to_doc(created_at).items() if k not in ("_id", "created_at")}
            for e in chunk
        ],
    }


class Sender(Protocol):
    """Publishes entries with confirms (``shared.messaging.connection.Publisher``)."""

    async def send(self, entries: Sequence[Entry]) -> None: ...


class Outbox:
    def __init__(self, db: Database, sender: Sender, *, publish_timeout: float = 10.0) -> None:
        self.col = db["outbox"]
        self.sender = sender
        self.publish_timeout = publish_timeout

    async def stage(self, session: AsyncClientSession, entries: Sequence[Entry]) -> None:
        """Store ``entries`` in the caller's transaction (one insert)."""
        if entries:
            now = datetime.now(UTC)  # wall time: the relay's grace is in wall seconds
            docs = [_batch_doc(chunk, now) for chunk in _chunks(entries)]
            await self.col.insert_many(docs, session=session)

    async def deliver(self, entries: Sequence[Entry]) -> bool:
        """After the commit: publish, then delete. A failure is logged, not raised: the
        change is committed and the relay publishes the entries later."""
        heads = [chunk[0].envelope.message_id for chunk in _chunks(entries)]
        return await self._publish(entries, heads)

    async def _publish(self, entries: Sequence[Entry], doc_ids: Sequence[str]) -> bool:
        if not entries:
            return True
        try:
            await asyncio.wait_for(self.sender.send(entries), self.publish_timeout)
        except Exception as exc:
            log.warning(
                "publish failed; the outbox relay will deliver",
                entries=len(entries),
                error=repr(exc),
            )
            return False
        try:
            await self.col.delete_many({"_id": {"$in": list(doc_ids)}})
        except Exception as exc:  # published: at worst the relay publishes them again
            log.warning("outbox delete failed", entries=len(entries), error=repr(exc))
        return True

    async def relay_once(self, grace: timedelta) -> int:
        """Publish entries older than ``grace`` (left by a crash or a broker outage)."""
        cutoff = datetime.now(UTC) - grace
        cursor = (
            # Both bounds: a one-sided range walks the collection on the embedded server.
            self.col.find({"created_at": {"$gte": EPOCH, "$lt": cutoff}})
            .sort("created_at", 1)
            .limit(RELAY_BATCH)
        )
        docs = [d async for d in cursor]
        if not docs:
            return 0
        entries: list[Entry] = []
        ids: list[str] = []
        for doc in docs:
            try:
                entries.extend(entries_of(doc))
                ids.append(doc["_id"])
            except Exception as exc:
                # Unreadable (written by an incompatible version?): set aside, not retried
                # forever in front of every other entry, and not lost.
                log.error("outbox entry unreadable; moved to outbox_dead", id=doc["_id"])
                await self.col.database["outbox_dead"].replace_one(
                    {"_id": doc["_id"]}, {**doc, "error": repr(exc)}, upsert=True
                )
                await self.col.delete_one({"_id": doc["_id"]})
        if entries and await self._publish(entries, ids):
            log.info("outbox relay published", entries=len(entries))
            return len(entries)
        return 0

    async def backlog(self) -> int:
        """Entries not yet published and deleted (in flight or waiting for the relay)."""
        total = 0
        async for doc in self.col.find({}, {"count": 1}):
            total += int(doc.get("count", 1))
        return total

    async def relay_forever(self, interval: float, grace: timedelta) -> None:
        while True:
            try:
                relayed = await self.relay_once(grace)
                metrics().outbox_relayed.inc(relayed)
                metrics().outbox_backlog.set(await self.backlog())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay round failed", error=repr(exc))
                relayed = 0
            if not relayed:  # after a round that found entries, look again at once
                await asyncio.sleep(interval)
