"""Wiring of the dialer worker process."""

from __future__ import annotations

import asyncio
import os
import socket

import structlog

from services.dialer.provider import SimulatedProvider
from services.dialer.worker import DialHandler
from shared.clock import clock_from
from shared.config import WorkerSettings
from shared.messaging.connection import connect, open_publisher
from shared.messaging.consumer import Consumer
from shared.messaging.topology import Names
from shared.metrics import start_metrics_server
from shared.runtime import run_until_signal
from shared.storage.mongo import make_client

log = structlog.get_logger(__name__)


async def serve(settings: WorkerSettings, stop: asyncio.Event) -> None:
    start_metrics_server(settings.metrics_port)
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    structlog.contextvars.bind_contextvars(worker=worker_id)
    clock = clock_from(settings)
    mongo = make_client(settings.mongodb_url, "dialer-worker")
    db = mongo[settings.mongodb_db]
    await db["dial_attempts"].find_one({})  # fail fast when MongoDB is unreachable
    connection = await connect(settings.amqp_url, f"dialer-worker {worker_id}")
    try:
        publisher = await open_publisher(connection, Names(settings.amqp_prefix))
        if settings.telephony_provider != "simulated":
            raise SystemExit(f"unknown TELEPHONY_PROVIDER {settings.telephony_provider!r}")
        provider = SimulatedProvider(settings, clock, db, worker_id)
        handler = DialHandler(
            db, publisher, provider, clock, worker_id, settings.attempt_heartbeat_seconds
        )
        await handler.beat()
        heartbeat = asyncio.create_task(handler.keep_alive())
        channel = await connection.channel()
        queue = await channel.get_queue(Names(settings.amqp_prefix).dial_queue)
        consumer = Consumer(
            queue,
            handler,
            prefetch=settings.worker_concurrency,
            dead_letters=await channel.get_exchange(Names(settings.amqp_prefix).dlx),
        )
        await consumer.start()
        log.info("dialer worker ready", concurrency=settings.worker_concurrency)
        await stop.wait()
        log.info("draining: calls in progress finish, nothing new is taken")
        await consumer.stop(settings.drain_seconds)
        heartbeat.cancel()
        await handler.leave()
        await provider.close()
    finally:
        await connection.close()
        await mongo.close()
    log.info("dialer worker stopped")


def run(settings: WorkerSettings) -> int:
    return run_until_signal(lambda stop: serve(settings, stop))
