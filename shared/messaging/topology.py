"""Exchanges, queues and routing keys, declared idempotently at start-up.

- ``{prefix}.events``: durable topic exchange with every state change; routing key
  ``<entity>.<event>.<campaign_uuid>`` (for example ``call.finished.<uuid>``).
- ``{prefix}.work``: durable direct exchange for internal work: ``dial`` commands to the
  dialer workers' quorum queue, ``result`` reports to the schedulers' quorum queue.
- ``{prefix}.dlx`` → ``{prefix}.dead``: poison messages, dead-lettered by the quorum
  queues' delivery limit or rejected by a consumer, keep the reason in their headers.
- ``{prefix}.scheduler.campaigns``: quorum queue bound to campaign events, so a
  scheduler picks up a new or appended campaign at once.
- ``{prefix}.commands``: quorum queue bound to ``command.*`` on the events exchange:
  commands of trusted integrations, consumed by the API processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class Names:
    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def work(self) -> str:
        return f"{self.prefix}.work"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dial_queue(self) -> str:
        return f"{self.prefix}.dial"

    @property
    def results_queue(self) -> str:
        return f"{self.prefix}.results"

    @property
    def commands_queue(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def campaigns_queue(self) -> str:
        return f"{self.prefix}.scheduler.campaigns"


#: Commands from trusted integrations, on the events exchange: ``command.<name>``.
COMMAND_PATTERN = "command.*"
DIAL_KEY = "dial"
RESULT_KEY = "result"


def event_key(event_type: str, campaign_uuid: str) -> str:
    """Routing key of an event: ``campaign.created`` + uuid → ``campaign.created.<uuid>``."""
    return f"{event_type}.{campaign_uuid}"


@dataclass
class Topology:
    events: AbstractExchange
    work: AbstractExchange
    dial: AbstractQueue
    results: AbstractQueue
    campaigns: AbstractQueue
    commands: AbstractQueue
    dead: AbstractQueue


def _work_queue_args(names: Names) -> FieldTable:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": names.dlx,
    }


async def declare(channel: AbstractChannel, names: Names) -> Topology:
    """Declare everything (idempotent: same arguments every time)."""
    events = await channel.declare_exchange(names.events, aio_pika.ExchangeType.TOPIC, durable=True)
    work = await channel.declare_exchange(names.work, aio_pika.ExchangeType.DIRECT, durable=True)
    dlx = await channel.declare_exchange(names.dlx, aio_pika.ExchangeType.FANOUT, durable=True)
    dead = await channel.declare_queue(
        names.dead, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(dlx, routing_key="")
    dial = await channel.declare_queue(
        names.dial_queue, durable=True, arguments=_work_queue_args(names)
    )
    await dial.bind(work, routing_key=DIAL_KEY)
    results = await channel.declare_queue(
        names.results_queue, durable=True, arguments=_work_queue_args(names)
    )
    await results.bind(work, routing_key=RESULT_KEY)
    campaigns = await channel.declare_queue(
        names.campaigns_queue, durable=True, arguments=_work_queue_args(names)
    )
    for pattern in ("campaign.created.*", "campaign.appended.*"):
        await campaigns.bind(events, routing_key=pattern)
    commands = await channel.declare_queue(
        names.commands_queue, durable=True, arguments=_work_queue_args(names)
    )
    await commands.bind(events, routing_key=COMMAND_PATTERN)
    return Topology(
        events=events,
        work=work,
        dial=dial,
        results=results,
        campaigns=campaigns,
        commands=commands,
        dead=dead,
    )


async def delete(channel: AbstractChannel, names: Names) -> None:
    """Delete the queues and exchanges :func:`declare` made (a test's or a benchmark's)."""
    for queue in (
        names.dial_queue,
        names.results_queue,
        names.campaigns_queue,
        names.commands_queue,
        names.dead,
    ):
        await channel.queue_delete(queue)
    for exchange in (names.events, names.work, names.dlx):
        await channel.exchange_delete(exchange)
