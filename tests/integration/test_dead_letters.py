"""The consumer's outcomes against a real quorum queue: dead-letter, requeue, retry in place.

Each test declares the project topology under its own prefix, runs a :class:`Consumer`
on the dial queue (quorum, delivery limit, dead-letter exchange) and reads
``{prefix}.dead`` to see what was dead-lettered and why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pymongo.errors import AutoReconnect

from shared.messaging.connection import connect
from shared.messaging.consumer import Consumer, Handler, Reject
from shared.messaging.envelope import Envelope
from shared.messaging.topology import DELIVERY_LIMIT, DIAL_KEY, Names, Topology, declare
from shared.metrics import metrics
from tests.conftest import Servers
from tests.support.amqp import next_message

pytestmark = pytest.mark.integration


@dataclass
class Seen:
    """What a handler saw of each delivery."""

    delivery_tag: int | None
    redelivered: bool | None
    delivery_count: Any


@dataclass
class Broker:
    connection: AbstractRobustConnection
    names: Names
    topology: Topology
    consumers: list[tuple[Consumer, AbstractRobustChannel]] = field(default_factory=list)

    async def publish(self) -> str:
        """Publish one dial command; returns its message id."""
        envelope = Envelope(
            type="dial", occurred_at=datetime.now(UTC), data={"call_uuid": "c", "attempt": 1}
        )
        await self.topology.work.publish(envelope.to_message(), routing_key=DIAL_KEY)
        return envelope.message_id

    async def consume(self, handler: Handler, *, dlx: bool = True, **options: Any) -> Consumer:
        """Run a consumer of the dial queue on its own channel."""
        channel = await self.connection.channel()
        queue = await channel.get_queue(self.names.dial_queue)
        dead_letters = await channel.get_exchange(self.names.dlx) if dlx else None
        consumer = Consumer(queue, handler, prefetch=1, dead_letters=dead_letters, **options)
        await consumer.start()
        self.consumers.append((consumer, channel))
        return consumer

    async def stop(self) -> None:
        """Stop the consumers and close their channels: an unacked message goes back."""
        for consumer, channel in self.consumers:
            await consumer.stop(5)
            await channel.close()
        self.consumers.clear()

    async def left_in(self, queue_name: str) -> AbstractIncomingMessage | None:
        """The next message of ``queue_name`` (taken off it), or None when it is empty."""
        channel = await self.connection.channel()
        try:
            queue = await channel.get_queue(queue_name)
            message = await queue.get(fail=False, no_ack=True)
            return message
        finally:
            await channel.close()


@pytest.fixture
async def broker(servers: Servers, amqp_prefix: str) -> AsyncIterator[Broker]:
    connection = await connect(servers.amqp_url, "test-dead-letters")
    try:
        names = Names(amqp_prefix)
        topology = await declare(await connection.channel(), names)
        running = Broker(connection, names, topology)
        yield running
        await running.stop()
    finally:
        await connection.close()


def dead_lettered(queue: str, reason: str) -> float:
    sample = metrics().messages_dead_lettered.labels(queue=queue, reason=reason)
    return float(sample._value.get())


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def seen(message: AbstractIncomingMessage) -> Seen:
    return Seen(
        message.delivery_tag,
        message.redelivered,
        (message.headers or {}).get("x-delivery-count"),
    )


async def test_reject_is_dead_lettered_at_once_with_its_reason(broker: Broker) -> None:
    queue = broker.names.dial_queue
    before = dead_lettered(queue, "rejected")
    deliveries: list[Seen] = []

    async def handler(message: AbstractIncomingMessage) -> None:
        deliveries.append(seen(message))
        raise Reject("bad shape: no call_uuid")

    await broker.consume(handler)
    message_id = await broker.publish()
    dead = await next_message(broker.topology.dead)
    assert dead.message_id == message_id
    headers = dead.headers or {}
    assert "bad shape" in text(headers["x-dialer-reason"])
    assert text(headers["x-dialer-queue"]) == queue
    assert dead.type == "dial"
    assert Envelope.from_body(dead.body).message_id == message_id
    assert dead_lettered(queue, "rejected") == before + 1

    await broker.stop()  # an unacked original would go back to the queue here
    assert len(deliveries) == 1
    assert await broker.left_in(queue) is None
    assert await broker.left_in(broker.names.dead) is None  # dead-lettered once


async def test_failing_message_is_dead_lettered_on_its_last_delivery(broker: Broker) -> None:
    queue = broker.names.dial_queue
    before = dead_lettered(queue, "delivery_limit")
    deliveries: list[Seen] = []

    async def handler(message: AbstractIncomingMessage) -> None:
        deliveries.append(seen(message))
        raise RuntimeError("handler bug")

    await broker.consume(handler)
    message_id = await broker.publish()
    dead = await next_message(broker.topology.dead)
    assert dead.message_id == message_id
    reason = text((dead.headers or {})["x-dialer-reason"])
    assert f"failed {DELIVERY_LIMIT} times" in reason
    assert "handler bug" in reason
    assert dead_lettered(queue, "delivery_limit") == before + 1

    await broker.stop()
    assert len(deliveries) == DELIVERY_LIMIT
    assert [d.redelivered for d in deliveries] == [False] + [True] * (DELIVERY_LIMIT - 1)
    assert await broker.left_in(queue) is None
    assert await broker.left_in(broker.names.dead) is None


async def test_transient_error_is_retried_in_place_without_a_redelivery(broker: Broker) -> None:
    queue = broker.names.dial_queue
    before = {reason: dead_lettered(queue, reason) for reason in ("rejected", "delivery_limit")}
    deliveries: list[Seen] = []
    handled = asyncio.Event()

    async def handler(message: AbstractIncomingMessage) -> None:
        deliveries.append(seen(message))
        if len(deliveries) <= 2:
            raise AutoReconnect("database restarting")
        handled.set()

    await broker.consume(handler, transient_seconds=10)
    await broker.publish()
    await asyncio.wait_for(handled.wait(), 10)
    await broker.stop()  # waits for the ack; an unacked message would go back

    assert len(deliveries) == 3
    assert len({d.delivery_tag for d in deliveries}) == 1  # one delivery, handled 3 times
    assert all(not d.redelivered and not d.delivery_count for d in deliveries)
    assert await broker.left_in(queue) is None
    assert await broker.left_in(broker.names.dead) is None
    assert {reason: dead_lettered(queue, reason) for reason in before} == before


async def test_without_a_dead_letter_exchange_the_broker_dead_letters_a_reject(
    broker: Broker,
) -> None:
    queue = broker.names.dial_queue
    before = dead_lettered(queue, "rejected")
    deliveries: list[Seen] = []

    async def handler(message: AbstractIncomingMessage) -> None:
        deliveries.append(seen(message))
        raise Reject("unknown type")

    await broker.consume(handler, dlx=False)
    message_id = await broker.publish()
    dead = await next_message(broker.topology.dead)
    assert dead.message_id == message_id
    headers = dead.headers or {}
    assert "x-dialer-reason" not in headers  # the broker moved it, with its own headers
    assert text(headers["x-first-death-reason"]) == "rejected"
    assert text(headers["x-first-death-queue"]) == queue
    assert dead_lettered(queue, "rejected") == before + 1

    await broker.stop()
    assert len(deliveries) == 1
    assert await broker.left_in(queue) is None
