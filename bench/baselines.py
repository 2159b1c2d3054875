"""Baselines: the minimum broker and database work for each figure, without the engine.

They run in the benchmark's own process against the same servers, right beside the
figure they stand for, so both see the same machine load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pymongo import AsyncMongoClient, UpdateOne, monitoring

from bench.procstat import cpu_seconds, self_cpu_seconds
from bench.report import percentile
from shared.storage.mongo import INDEXES

Doc = dict[str, Any]


class CommandCounter(monitoring.CommandListener):
    """Counts the commands (round trips) one client of the harness sends."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in ("hello", "ismaster", "isMaster", "endSessions", "ping"):
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


def counted_client(url: str) -> tuple[AsyncMongoClient[Doc], CommandCounter]:
    counter = CommandCounter()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        url, appname="bench", event_listeners=[counter]
    )
    return client, counter


async def insert_many(url: str, db_name: str, docs: list[Doc]) -> float:
    """Records per second of a bare unordered ``insert_many`` into a collection that has
    the indexes of ``calls`` (so index maintenance is in both figures)."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url, appname="bench")
    try:
        coll = client[db_name]["baseline_insert"]
        await coll.drop()
        await coll.create_indexes(INDEXES["calls"])
        start = time.perf_counter()
        await coll.insert_many(docs, ordered=False)
        elapsed = time.perf_counter() - start
        await coll.drop()
    finally:
        await client.close()
    return len(docs) / elapsed


@dataclass
class PipelineResult:
    per_second: float
    cpu_per_1000: float  # harness CPU seconds per 1,000 messages
    db_cpu_per_1000: float
    broker_cpu_per_1000: float  # the RabbitMQ node (shared with anything else running)
    round_trips_per_message: float
    broker_messages_per_message: float
    elapsed: float


async def pipeline(
    url: str,
    amqp_url: str,
    db_name: str,
    queue_name: str,
    n: int,
    db_pid: int | None,
    broker_pid: int | None = None,
    batch: int = 200,
) -> PipelineResult:
    """One publish (with confirm), one consume and one batched write per message."""
    client, counter = counted_client(url)
    coll = client[db_name]["baseline_calls"]
    await coll.drop()
    for i in range(0, n, 10_000):
        await coll.insert_many(
            [{"_id": j, "status": "IN_PROGRESS"} for j in range(i, min(n, i + 10_000))]
        )
    connection = await aio_pika.connect(amqp_url)
    try:
        pub = await connection.channel(publisher_confirms=True)
        queue = await pub.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.purge()
        sub = await connection.channel()
        await sub.set_qos(prefetch_count=batch * 2)
        consumer_queue = await sub.get_queue(queue_name)
        pending: list[AbstractIncomingMessage] = []
        ready = asyncio.Event()
        done = asyncio.Event()
        written = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            pending.append(message)
            ready.set()

        async def writer() -> None:
            nonlocal written, pending
            while written < n:
                await ready.wait()
                if len(pending) < batch:
                    await asyncio.sleep(0.002)
                chunk, pending = pending[:batch], pending[batch:]
                if not pending:
                    ready.clear()
                if not chunk:
                    continue
                ops = [
                    UpdateOne({"_id": int(m.body)}, {"$set": {"status": "COMPLETED"}})
                    for m in chunk
                ]
                await coll.bulk_write(ops, ordered=False)
                await chunk[-1].ack(multiple=True)
                written += len(chunk)
            done.set()

        rounds0, cpu0 = counter.count, self_cpu_seconds()
        db0 = cpu_seconds(db_pid) if db_pid else 0.0
        mq0 = cpu_seconds(broker_pid) if broker_pid else 0.0
        start = time.perf_counter()
        tag = await consumer_queue.consume(on_message)
        task = asyncio.create_task(writer())
        window = 500
        for i in range(0, n, window):
            await asyncio.gather(
                *(
                    pub.default_exchange.publish(
                        aio_pika.Message(str(j).encode()), routing_key=queue_name
                    )
                    for j in range(i, min(n, i + window))
                )
            )
        await done.wait()
        elapsed = time.perf_counter() - start
        cpu = self_cpu_seconds() - cpu0
        db_cpu = (cpu_seconds(db_pid) - db0) if db_pid else 0.0
        mq_cpu = (cpu_seconds(broker_pid) - mq0) if broker_pid else 0.0
        rounds = counter.count - rounds0
        await task
        await consumer_queue.cancel(tag)
        await pub.queue_delete(queue_name)
    finally:
        await connection.close()
        await coll.drop()
        await client.close()
    return PipelineResult(
        per_second=n / elapsed,
        cpu_per_1000=cpu / n * 1000,
        db_cpu_per_1000=db_cpu / n * 1000,
        broker_cpu_per_1000=mq_cpu / n * 1000,
        round_trips_per_message=rounds / n,
        broker_messages_per_message=2.0,  # one publish, one delivery, by construction
        elapsed=elapsed,
    )


async def ping_pong(
    url: str, amqp_url: str, db_name: str, prefix: str, samples: int
) -> tuple[float, float]:
    """p50 and p99 (ms) of the shortest slot-refill chain: publish a "result", consume it,
    write one document, publish a "dial", consume it. The engine's chain has these hops
    plus its reads and transactions."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url, appname="bench")
    coll = client[db_name]["baseline_pingpong"]
    await coll.insert_one({"_id": 0, "n": 0})
    connection = await aio_pika.connect(amqp_url)
    names = (f"{prefix}.baseline.a", f"{prefix}.baseline.b")
    try:
        ch = await connection.channel(publisher_confirms=True)
        args = {"x-queue-type": "quorum"}
        qa = await ch.declare_queue(names[0], durable=True, arguments=args)
        qb = await ch.declare_queue(names[1], durable=True, arguments=args)
        arrived: asyncio.Future[None] | None = None

        async def on_a(message: AbstractIncomingMessage) -> None:
            await coll.update_one({"_id": 0}, {"$inc": {"n": 1}})
            await ch.default_exchange.publish(aio_pika.Message(b"dial"), routing_key=names[1])
            await message.ack()

        async def on_b(message: AbstractIncomingMessage) -> None:
            await message.ack()
            if arrived is not None and not arrived.done():
                arrived.set_result(None)

        tags = (await qa.consume(on_a), await qb.consume(on_b))
        latencies: list[float] = []
        for _ in range(samples):
            arrived = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            await ch.default_exchange.publish(aio_pika.Message(b"result"), routing_key=names[0])
            await arrived
            latencies.append((time.perf_counter() - start) * 1000)
        await qa.cancel(tags[0])
        await qb.cancel(tags[1])
        for name in names:
            await ch.queue_delete(name)
    finally:
        await connection.close()
        await coll.drop()
        await client.close()
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


async def timed(
    call: Callable[[], Awaitable[object]], samples: int, budget: float = 10.0
) -> list[float]:
    """Wall milliseconds of up to ``samples`` sequential calls (after one warm-up call),
    fewer when they take more than ``budget`` seconds together (at least 3)."""
    out: list[float] = []
    start = time.perf_counter()
    await call()
    first = (time.perf_counter() - start) * 1000
    if first > 1000:  # a slow query: the warm-up call counts, as every call is costly
        out.append(first)
    deadline = time.perf_counter() + budget
    while len(out) < samples and (len(out) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1000)
    return out
