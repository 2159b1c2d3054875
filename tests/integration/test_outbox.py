"""Transactional outbox on real servers: a change and its message commit together.

A :class:`FailingSender` stands for a broker that was unreachable when the writer
published; the relay that delivers afterwards is a fresh :class:`Outbox` with a real
publisher, as a restarted process would build it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.clock import ScaledClock
from shared.domain.models import CreateCampaignRequest
from shared.domain.status import CampaignStatus
from shared.messaging.connection import Publisher, connect, open_publisher
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Entry, Outbox, entries_of
from shared.messaging.topology import DIAL_KEY, Names
from shared.service.campaigns import CALL_DELETED, CAMPAIGN_CREATED, CampaignService
from shared.storage.engine import EngineStore
from shared.storage.mongo import Database, Document, in_transaction
from tests.conftest import Servers
from tests.integration.test_api_support import FIRM_A, record
from tests.support.amqp import next_message
from tests.support.seed import seed_campaign

pytestmark = pytest.mark.integration


class FailingSender:
    """The broker is unreachable: every publish fails."""

    def __init__(self) -> None:
        self.attempts = 0

    async def send(self, entries: Sequence[Entry]) -> None:
        self.attempts += 1
        raise ConnectionError("broker unreachable")


class Aborted(Exception):
    """Raised by an ``announce`` callback after it staged its entries."""


@dataclass
class Broker:
    connection: AbstractRobustConnection
    names: Names
    publisher: Publisher

    async def tap(self, pattern: str) -> AbstractQueue:
        """A private queue bound to ``pattern`` on the events exchange."""
        channel = await self.connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(self.names.events, routing_key=pattern)
        return queue


@pytest.fixture
async def broker(servers: Servers, amqp_prefix: str) -> AsyncIterator[Broker]:
    connection = await connect(servers.amqp_url, "test-outbox")
    try:
        names = Names(amqp_prefix)
        yield Broker(connection, names, await open_publisher(connection, names))
    finally:
        await connection.close()


async def outbox_docs(db: Database) -> list[Document]:
    return [d async for d in db["outbox"].find({}).sort("created_at", 1)]


def campaign_request(n: int = 2) -> CreateCampaignRequest:
    now = datetime.now(UTC)
    return CreateCampaignRequest.model_validate(
        {
            "call_campaign_name": "outbox",
            "start_at": now - timedelta(hours=1),
            "end_at": now + timedelta(hours=8),
            "speed": 2,
            "call_records": [record(i) for i in range(n)],
        }
    )


def service(db: Database, sender: Any) -> CampaignService:
    return CampaignService(db, sender, ScaledClock(), default_firm_max_speed=50)


def event(type_: str, campaign_uuid: str) -> Entry:
    return Entry.event(
        Envelope(
            type=type_, occurred_at=datetime.now(UTC), firm_id=FIRM_A, campaign_uuid=campaign_uuid
        )
    )


async def test_create_while_broker_is_away_is_relayed_after_a_restart(
    mongo_db: Database, broker: Broker
) -> None:
    failing = FailingSender()
    created = await service(mongo_db, failing).create(FIRM_A, campaign_request())
    assert failing.attempts == 1
    assert await mongo_db["campaigns"].count_documents({"_id": created.uuid}) == 1
    [doc] = await outbox_docs(mongo_db)
    [stored] = entries_of(doc)
    assert stored.target == "events"
    assert stored.envelope.type == CAMPAIGN_CREATED
    assert stored.routing_key == f"{CAMPAIGN_CREATED}.{created.uuid}"
    assert doc["_id"] == stored.envelope.message_id

    tap = await broker.tap(f"{CAMPAIGN_CREATED}.*")
    relay = Outbox(mongo_db, broker.publisher)  # a restarted process
    assert await relay.backlog() == 1
    assert await relay.relay_once(timedelta(0)) == 1
    message = await next_message(tap)
    assert message.message_id == doc["_id"]
    assert message.routing_key == stored.routing_key
    assert Envelope.from_body(message.body) == stored.envelope
    assert await relay.backlog() == 0
    assert await outbox_docs(mongo_db) == []
    assert await relay.relay_once(timedelta(0)) == 0


async def test_relay_waits_for_the_grace_then_publishes_oldest_first(
    mongo_db: Database, broker: Broker
) -> None:
    campaign_uuid = "00000000-0000-4000-8000-000000000001"
    left = event(CAMPAIGN_CREATED, campaign_uuid)  # left by a process that died
    young = event(CAMPAIGN_CREATED, campaign_uuid)  # its writer may still be delivering
    await mongo_db["outbox"].insert_one(left.to_doc(datetime.now(UTC) - timedelta(minutes=10)))
    outbox = Outbox(mongo_db, FailingSender())

    async def stage(s: AsyncClientSession) -> None:
        await outbox.stage(s, [young])

    await in_transaction(mongo_db, stage)
    tap = await broker.tap(f"{CAMPAIGN_CREATED}.*")
    relay = Outbox(mongo_db, broker.publisher)
    assert await relay.backlog() == 2

    assert await relay.relay_once(timedelta(hours=1)) == 0  # both younger than the grace
    assert await relay.backlog() == 2
    assert await relay.relay_once(timedelta(minutes=5)) == 1  # only the old one
    assert (await next_message(tap)).message_id == left.envelope.message_id
    [remaining] = await outbox_docs(mongo_db)
    assert remaining["_id"] == young.envelope.message_id

    age = datetime.now(UTC) - remaining["created_at"]
    assert await relay.relay_once(age + timedelta(minutes=1)) == 0
    assert await relay.relay_once(timedelta(0)) == 1
    assert (await next_message(tap)).message_id == young.envelope.message_id
    assert await relay.backlog() == 0


async def seeded(db: Database, phones: int = 3) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    campaign_uuid = await seed_campaign(
        db,
        phones=[f"+7701{i:07d}" for i in range(phones)],
        start_at=now - timedelta(hours=1),
        end_at=now + timedelta(hours=8),
        now=now,
    )
    await db["campaigns"].update_one(
        {"_id": campaign_uuid}, {"$set": {"status": CampaignStatus.PROCESSING.value}}
    )
    return campaign_uuid, now


async def snapshot(db: Database, campaign_uuid: str) -> tuple[Document | None, list[Document]]:
    campaign = await db["campaigns"].find_one({"_id": campaign_uuid})
    calls = [d async for d in db["calls"].find({"campaign_uuid": campaign_uuid}).sort("seq", 1)]
    return campaign, calls


def dial_entries(calls: Sequence[Document]) -> list[Entry]:
    return [
        Entry.work(
            DIAL_KEY,
            Envelope(
                type="dial",
                occurred_at=datetime.now(UTC),
                firm_id=FIRM_A,
                campaign_uuid=c["campaign_uuid"],
                data={"call_uuid": c["_id"], "attempt": c["attempts"]},
            ),
        )
        for c in calls
    ]


async def test_claim_whose_announce_fails_claims_nothing_and_stages_nothing(
    mongo_db: Database,
) -> None:
    campaign_uuid, now = await seeded(mongo_db)
    store = EngineStore(mongo_db)
    outbox = Outbox(mongo_db, FailingSender())
    before = await snapshot(mongo_db, campaign_uuid)
    campaign = await store.campaign(campaign_uuid)
    assert campaign is not None
    staged: list[Entry] = []

    async def announce(s: AsyncClientSession, claimed: list[Document]) -> None:
        staged[:] = dial_entries(claimed)
        await outbox.stage(s, staged)
        raise Aborted("after staging")

    with pytest.raises(Aborted):
        await store.claim(campaign, [0, 1], now, timedelta(minutes=5), announce)
    assert len(staged) == 2  # the claim got as far as announcing two calls
    assert await snapshot(mongo_db, campaign_uuid) == before
    assert all(c["status"] == "PENDING" and c["attempts"] == 0 for c in before[1])
    assert await outbox.backlog() == 0

    # The same claim with an announce that succeeds stores both, together.
    async def stage(s: AsyncClientSession, claimed: list[Document]) -> None:
        await outbox.stage(s, dial_entries(claimed))

    claimed, reserved = await store.claim(campaign, [0, 1], now, timedelta(minutes=5), stage)
    assert reserved and [c["seq"] for c in claimed] == [0, 1]
    assert await outbox.backlog() == 2
    after, _ = await snapshot(mongo_db, campaign_uuid)
    assert after is not None
    assert (after["stats"]["IN_PROGRESS"], after["stats"]["PENDING"]) == (2, 1)


async def test_set_status_whose_announce_fails_changes_nothing(mongo_db: Database) -> None:
    campaign_uuid, now = await seeded(mongo_db, phones=1)
    store = EngineStore(mongo_db)
    outbox = Outbox(mongo_db, FailingSender())
    before = await snapshot(mongo_db, campaign_uuid)

    async def announce(s: AsyncClientSession, new: CampaignStatus) -> None:
        await outbox.stage(s, [event(f"campaign.{new.value.lower()}", campaign_uuid)])
        raise Aborted("after staging")

    with pytest.raises(Aborted):
        await store.set_status(
            campaign_uuid,
            CampaignStatus.PROCESSING,
            CampaignStatus.COMPLETED,
            now,
            announce=announce,
        )
    assert await snapshot(mongo_db, campaign_uuid) == before
    assert await outbox.backlog() == 0


async def test_delete_pending_call_publishes_call_deleted(
    mongo_db: Database, broker: Broker
) -> None:
    campaigns = service(mongo_db, broker.publisher)
    created = await campaigns.create(FIRM_A, campaign_request())
    tap = await broker.tap(f"{CALL_DELETED}.*")
    call = await mongo_db["calls"].find_one({"campaign_uuid": created.uuid, "seq": 0})
    assert call is not None

    await campaigns.delete_call(FIRM_A, created.uuid, call["_id"])
    message = await next_message(tap)
    envelope = Envelope.from_body(message.body)
    assert message.routing_key == f"{CALL_DELETED}.{created.uuid}"
    assert envelope.type == CALL_DELETED
    assert envelope.data == {
        "call_uuid": call["_id"],
        "phone_number": call["phone_number"],
        "seq": 0,
    }
    assert await outbox_docs(mongo_db) == []


async def test_delete_pending_call_while_broker_is_away_stays_in_the_outbox(
    mongo_db: Database, broker: Broker
) -> None:
    created = await service(mongo_db, broker.publisher).create(FIRM_A, campaign_request())
    call = await mongo_db["calls"].find_one({"campaign_uuid": created.uuid, "seq": 1})
    assert call is not None
    failing = FailingSender()

    await service(mongo_db, failing).delete_call(FIRM_A, created.uuid, call["_id"])
    assert failing.attempts == 1
    assert await mongo_db["calls"].count_documents({"_id": call["_id"]}) == 0
    [doc] = await outbox_docs(mongo_db)
    [stored] = entries_of(doc)
    assert stored.envelope.type == CALL_DELETED
    assert stored.envelope.data["call_uuid"] == call["_id"]
    assert stored.routing_key == f"{CALL_DELETED}.{created.uuid}"

    tap = await broker.tap(f"{CALL_DELETED}.*")
    assert await Outbox(mongo_db, broker.publisher).relay_once(timedelta(0)) == 1
    assert (await next_message(tap)).message_id == doc["_id"]
    assert await outbox_docs(mongo_db) == []
