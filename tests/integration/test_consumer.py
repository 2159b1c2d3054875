"""The consumer base on a real quorum queue: graceful drain on stop, and prefetch.

Handlers here block until the test releases them, so the test can look at the broker
(ready messages, consumers of the queue) while messages are in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared.messaging.connection import connect
from shared.messaging.consumer import Consumer
from shared.messaging.envelope import Envelope
from shared.messaging.topology import DIAL_KEY, Names, Topology, declare
from tests.conftest import Servers

pytestmark = pytest.mark.integration

WITHIN = 20.0


@dataclass
class Gate:
    """A handler that records what it runs and waits for a release per message."""

    released: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        assert message.message_id is not None
        await self._note(lambda: self.started.append(str(message.message_id)), +1)
        await self.released.acquire()
        await self._note(lambda: self.finished.append(str(message.message_id)), -1)

    async def _note(self, record: Callable[[], None], delta: int) -> None:
        async with self.changed:
            record()
            self.running += delta
            self.most_running = max(self.most_running, self.running)
            self.changed.notify_all()

    async def until(self, check: Callable[[], bool]) -> None:
        async with self.changed, asyncio.timeout(WITHIN):
            await self.changed.wait_for(check)


@dataclass
class Broker:
    connection: AbstractRobustConnection
    names: Names
    topology: Topology

    async def publish(self) -> str:
        envelope = Envelope(type="dial", occurred_at=datetime.now(UTC), data={"call_uuid": "c"})
        await self.topology.work.publish(envelope.to_message(), routing_key=DIAL_KEY)
        return envelope.message_id

    async def consumer(self, handler: Gate, prefetch: int) -> Consumer:
        channel = await self.connection.channel()
        consumer = Consumer(
            await channel.get_queue(self.names.dial_queue), handler, prefetch=prefetch
        )
        await consumer.start()
        return consumer

    async def counts(self) -> tuple[int, int]:
        """(ready messages, consumers) of the dial queue, as the broker reports them."""
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.names.dial_queue, passive=True)
            result = queue.declaration_result
            return result.message_count or 0, result.consumer_count or 0
        finally:
            await channel.close()

    async def until_counts(self, ready: int, consumers: int) -> None:
        """Poll the broker until the dial queue has these counts, or fail after a deadline."""
        deadline = time.monotonic() + WITHIN
        while (seen := await self.counts()) != (ready, consumers):
            if time.monotonic() > deadline:
                raise AssertionError(f"(ready, consumers) is {seen}, not {(ready, consumers)}")
            await asyncio.sleep(0.02)

    async def take_all(self) -> list[str]:
        """Take (and ack) every message left in the dial queue; return their ids."""
        channel = await self.connection.channel()
        try:
            queue = await channel.get_queue(self.names.dial_queue)
            ids = []
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                ids.append(str(message.message_id))
            return ids
        finally:
            await channel.close()


@pytest.fixture
async def broker(servers: Servers, amqp_prefix: str) -> AsyncIterator[Broker]:
    connection = await connect(servers.amqp_url, "test-consumer")
    try:
        names = Names(amqp_prefix)
        yield Broker(connection, names, await declare(await connection.channel(), names))
    finally:
        await connection.close()


async def finish(stopping: Awaitable[None]) -> None:
    async with asyncio.timeout(WITHIN):
        await stopping


async def test_stop_drains_the_message_in_flight_and_takes_no_new_one(broker: Broker) -> None:
    gate = Gate()
    consumer = await broker.consumer(gate, prefetch=1)
    first = await broker.publish()
    await gate.until(lambda: gate.started == [first])

    stopping = asyncio.create_task(consumer.stop(drain_seconds=2 * WITHIN))
    second = await broker.publish()
    # A quorum queue counts a cancelled consumer until its unacked messages are settled.
    await broker.until_counts(ready=1, consumers=1)
    assert not stopping.done(), "stop returned while a handler was still running"

    # The first is acked now, which frees the prefetch slot: a consumer still subscribed
    # would be sent the second at once.
    gate.released.release()
    await finish(stopping)
    assert gate.finished == [first]
    await broker.until_counts(ready=1, consumers=0)
    assert gate.started == [first]
    await consumer.queue.channel.close()  # would send an unacked message back to the queue
    assert await broker.take_all() == [second]


async def test_prefetch_bounds_the_handlers_running_at_once(broker: Broker) -> None:
    prefetch, total = 3, 8
    published = [await broker.publish() for _ in range(total)]
    gate = Gate()
    consumer = await broker.consumer(gate, prefetch=prefetch)

    await gate.until(lambda: gate.running == prefetch)
    await broker.until_counts(ready=total - prefetch, consumers=1)
    assert len(gate.started) == prefetch

    gate.released.release()  # one finishes and is acked: exactly one more is delivered
    await gate.until(lambda: len(gate.finished) == 1 and gate.running == prefetch)
    await broker.until_counts(ready=total - prefetch - 1, consumers=1)
    assert len(gate.started) == prefetch + 1

    for _ in range(total - 1):
        gate.released.release()
    await gate.until(lambda: len(gate.finished) == total)
    await finish(consumer.stop(drain_seconds=WITHIN))
    assert gate.most_running == prefetch
    assert sorted(gate.started) == sorted(gate.finished) == sorted(published)
    await consumer.queue.channel.close()
    assert await broker.take_all() == []
