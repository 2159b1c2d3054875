"""Robust RabbitMQ connection and a confirming publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Entry
from shared.messaging.topology import Names, Topology, declare, event_key


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A connection that reconnects by itself and restores channels, exchanges, queues."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name})


class Publisher:
    """Publishes envelopes with publisher confirms (each publish awaits the broker's ack)."""

    def __init__(self, channel: AbstractRobustChannel, topology: Topology) -> None:
        self.channel = channel
        self.topology = topology

    async def event(self, envelope: Envelope) -> None:
        assert envelope.campaign_uuid is not None
        await self.topology.events.publish(
            envelope.to_message(), routing_key=event_key(envelope.type, envelope.campaign_uuid)
        )

    async def events(self, envelopes: Iterable[Envelope]) -> None:
        """Publish many at once; confirms are awaited together."""
        await asyncio.gather(*(self.event(e) for e in envelopes))

    async def work(self, routing_key: str, envelope: Envelope) -> None:
        await self.topology.work.publish(envelope.to_message(), routing_key=routing_key)

    async def works(self, routing_key: str, envelopes: Iterable[Envelope]) -> None:
        await asyncio.gather(*(self.work(routing_key, e) for e in envelopes))

    async def send(self, entries: Sequence[Entry]) -> None:
        """Publish outbox entries; confirms are awaited together (raises if any failed)."""
        await asyncio.gather(
            *(
                (self.topology.events if e.target == "events" else self.topology.work).publish(
                    e.envelope.to_message(), routing_key=e.routing_key
                )
                for e in entries
            )
        )


async def open_publisher(connection: AbstractRobustConnection, names: Names) -> Publisher:
    channel = await connection.channel(publisher_confirms=True)
    topology = await declare(channel, names)
    return Publisher(channel, topology)
