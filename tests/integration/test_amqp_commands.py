"""Commands over AMQP through a real RabbitMQ: same validation and answers as HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue

from services.api.commands import CommandHandler
from shared.clock import ScaledClock
from shared.messaging.connection import Publisher, connect, open_publisher
from shared.messaging.consumer import Consumer
from shared.messaging.envelope import Envelope
from shared.messaging.topology import Names
from shared.service.campaigns import CampaignService
from shared.storage.idempotency import IdempotencyStore
from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_support import FIRM_A, FIRM_B, phone, record
from tests.support.amqp import next_message

pytestmark = pytest.mark.integration


@dataclass
class Commands:
    publisher: Publisher
    replies: AbstractQueue
    rejected: AbstractQueue

    async def send(
        self,
        name: str,
        data: dict[str, Any],
        firm: str | None = FIRM_A,
        reply: bool = True,
        message_id: str | None = None,
    ) -> tuple[int, Any]:
        correlation_id = uuid.uuid4().hex
        envelope = Envelope(
            type=f"command.{name}", occurred_at=datetime.now(UTC), firm_id=firm, data=data
        )
        if message_id is not None:
            envelope = envelope.model_copy(update={"message_id": message_id})
        message = envelope.to_message(
            reply_to=self.replies.name if reply else None, correlation_id=correlation_id
        )
        await self.publisher.topology.events.publish(message, routing_key=f"command.{name}")
        if not reply:
            return 0, None
        answer = await next_message(self.replies)
        assert answer.correlation_id == correlation_id
        body = json.loads(answer.body)
        return body["status"], body["body"]


@pytest.fixture
async def commands(
    servers: Servers, mongo_db: Database, amqp_prefix: str
) -> AsyncIterator[Commands]:
    connection = await connect(servers.amqp_url, "test-commands")
    try:
        names = Names(amqp_prefix)
        publisher = await open_publisher(connection, names)
        service = CampaignService(mongo_db, publisher, ScaledClock(), default_firm_max_speed=50)
        channel = await connection.channel()
        consumer = Consumer(
            await channel.get_queue(names.commands_queue),
            CommandHandler(service, publisher, IdempotencyStore(mongo_db, 3600)),
            prefetch=4,
        )
        await consumer.start()
        client = await connection.channel()
        # Exclusive (gone with the connection), not auto-delete: each read re-subscribes.
        replies = await client.declare_queue(exclusive=True)
        rejected = await client.declare_queue(exclusive=True)
        await rejected.bind(names.events, routing_key="command.rejected.*")
        yield Commands(publisher, replies, rejected)
        await consumer.stop(5)
    finally:
        await connection.close()


def campaign(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "call_campaign_name": "over amqp",
        "start_at": (now - timedelta(hours=1)).isoformat(),
        "end_at": (now + timedelta(hours=8)).isoformat(),
        "speed": 2,
        "allow_dynamic_call_appending": True,
        "call_records": [record(0), record(1)],
        **changes,
    }


async def test_create_and_append_answer_like_the_api(commands: Commands) -> None:
    status, created = await commands.send("create_campaign", campaign())
    assert status == 201 and created["call_records_added"] == 2
    assert created["status"] in ("PENDING", "PROCESSING")
    status, appended = await commands.send(
        "append_records", {"campaign_uuid": created["uuid"], "call_records": [record(2)]}
    )
    assert status == 200 and appended["call_records_added"] == 1
    assert appended["campaign_uuid"] == created["uuid"]


async def test_create_422_lists_problems_under_data(commands: Commands) -> None:
    bad = campaign(call_records=[record(0, phone_number="12")], speed=0)
    status, body = await commands.send("create_campaign", bad)
    assert status == 422
    locs = {tuple(d["loc"]) for d in body["error"]["details"]}
    assert ("data", "speed") in locs
    assert ("data", "call_records", 0, "phone_number") in locs


async def test_append_404_and_other_firm_403(commands: Commands) -> None:
    status, body = await commands.send(
        "append_records", {"campaign_uuid": str(uuid.uuid4()), "call_records": [record(2)]}
    )
    assert status == 404 and body["error"]["code"]
    _, created = await commands.send("create_campaign", campaign())
    status, _ = await commands.send(
        "append_records",
        {"campaign_uuid": created["uuid"], "call_records": [record(3)]},
        firm=FIRM_B,
    )
    assert status == 403


async def test_delete_call_and_delete_by_phone(commands: Commands, mongo_db: Database) -> None:
    _, created = await commands.send(
        "create_campaign", campaign(call_records=[record(0), record(1)])
    )
    calls = [c async for c in mongo_db["calls"].find({"campaign_uuid": created["uuid"]})]
    first = next(c for c in calls if c["seq"] == 0)
    status, body = await commands.send(
        "delete_call", {"campaign_uuid": created["uuid"], "call_uuid": first["_id"]}
    )
    assert (status, body) == (200, {"deleted": first["_id"]})
    status, body = await commands.send(
        "delete_call", {"campaign_uuid": created["uuid"], "call_uuid": first["_id"]}
    )
    assert status == 404
    status, body = await commands.send(
        "delete_phone", {"campaign_uuid": created["uuid"], "phone_number": phone(1)}
    )
    assert status == 200 and len(body["deleted"]) == 1
    status, body = await commands.send(
        "delete_phone", {"campaign_uuid": created["uuid"], "phone_number": "not-a-phone"}
    )
    assert status == 422


async def test_unknown_command_and_missing_firm_are_422(commands: Commands) -> None:
    status, body = await commands.send("launch_rockets", {})
    assert status == 422 and "unknown command" in body["error"]["message"]
    status, body = await commands.send("create_campaign", campaign(), firm=None)
    assert status == 422 and "firm_id" in body["error"]["message"]


async def test_failed_command_without_reply_to_is_an_error_event(commands: Commands) -> None:
    await commands.send("create_campaign", campaign(speed=0), reply=False)
    event = Envelope.from_body((await next_message(commands.rejected)).body)
    assert event.type == "command.rejected"
    assert event.data["command"] == "create_campaign"
    assert event.data["status"] == 422
    assert event.data["error"]["details"]


_ = aio_pika


async def test_a_create_delivered_twice_creates_one_campaign(
    commands: Commands, mongo_db: Database
) -> None:
    message_id, body = str(uuid.uuid4()), campaign()
    first = await commands.send("create_campaign", body, message_id=message_id)
    again = await commands.send("create_campaign", body, message_id=message_id)
    assert first[0] == 201 and again == first
    assert await mongo_db["campaigns"].count_documents({}) == 1
    # The same message id on another command is refused, not run.
    other = await commands.send("create_campaign", campaign(), message_id=message_id)
    assert other[0] == 422
    # A refused command changes nothing and is not remembered: its copy is judged again.
    bad, bad_body = str(uuid.uuid4()), campaign(speed=0)
    refused = await commands.send("create_campaign", bad_body, message_id=bad)
    assert refused[0] == 422
    assert (await commands.send("create_campaign", bad_body, message_id=bad)) == refused
    assert await mongo_db["campaigns"].count_documents({}) == 1
