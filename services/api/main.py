"""`dialer api`: wire the dependencies, serve until SIGTERM, then drain and close."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import timedelta

import structlog
from aiohttp import web

from services.api.app import create_app, runner_options
from services.api.auth import KeyAuthenticator
from services.api.commands import CommandHandler
from services.api.health import DependencyHealth
from services.api.ratelimit import RateLimiter
from shared.clock import clock_from
from shared.config import ApiSettings
from shared.messaging.connection import connect, open_publisher
from shared.messaging.consumer import Consumer
from shared.messaging.topology import Names
from shared.runtime import run_until_signal
from shared.service.campaigns import CampaignService
from shared.storage.idempotency import IdempotencyStore
from shared.storage.keys import ApiKeyRepository
from shared.storage.mongo import ensure_indexes, make_client
from shared.storage.sessions import SessionFence

log = structlog.get_logger(__name__)


def run(settings: ApiSettings) -> int:
    """Serve the API until SIGTERM or SIGINT; return the process exit code."""

    async def serve(stop: asyncio.Event) -> None:
        clock = clock_from(settings)
        client = make_client(settings.mongodb_url, "dialer-api")
        connection = await connect(settings.amqp_url, "dialer-api")
        try:
            db = client[settings.mongodb_db]
            await ensure_indexes(db)
            fence = SessionFence(
                db, f"api:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}", "api"
            )
            await fence.start(timedelta(seconds=settings.session_fence_seconds))
            names = Names(settings.amqp_prefix)
            publisher = await open_publisher(connection, names)
            service = CampaignService(
                db, publisher, clock, default_firm_max_speed=settings.default_firm_max_speed
            )
            idempotency = IdempotencyStore(db, settings.idempotency_ttl_seconds)
            app = create_app(
                service,
                KeyAuthenticator(ApiKeyRepository(db), settings.api_key_cache_seconds),
                DependencyHealth(
                    db, lambda: not (connection.is_closed or publisher.channel.is_closed)
                ),
                max_body_bytes=settings.api_max_body_bytes,
                idempotency=idempotency,
                rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
                read_timeout=settings.api_read_timeout_seconds,
            )
            commands_channel = await connection.channel()
            commands = Consumer(
                await commands_channel.get_queue(names.commands_queue),
                CommandHandler(service, publisher, idempotency),
                prefetch=8,
                dead_letters=await commands_channel.get_exchange(names.dlx),
            )
            await commands.start()
            # drains requests in flight (60 s)
            runner = web.AppRunner(app, **runner_options(settings.api_read_timeout_seconds))
            await runner.setup()
            site = web.TCPSite(runner, settings.api_host, settings.api_port)
            await site.start()
            log.info("api listening", host=settings.api_host, port=settings.api_port)
            relay = asyncio.create_task(
                service.outbox.relay_forever(
                    settings.outbox_relay_seconds,
                    timedelta(seconds=settings.outbox_grace_seconds),
                )
            )
            await stop.wait()
            log.info("api stopping: draining requests and commands in flight")
            await commands.stop(settings.drain_seconds)
            await runner.cleanup()
            relay.cancel()
            await fence.stop()
        finally:
            await connection.close()
            await client.close()

    return run_until_signal(serve)
