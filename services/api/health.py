"""``GET /health``: does MongoDB answer a ping, is the RabbitMQ channel open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shared.domain.models import Health
from shared.storage.mongo import Database


class DependencyHealth:
    """Checks the process's own MongoDB client and RabbitMQ channel."""

    def __init__(
        self, db: Database, rabbitmq_open: Callable[[], bool], timeout: float = 2.0
    ) -> None:
        self.db = db
        self.rabbitmq_open = rabbitmq_open
        self.timeout = timeout

    async def _mongodb(self) -> bool:
        try:
            await asyncio.wait_for(self.db.command("ping"), self.timeout)
        except Exception:  # any failure means "down"; the reason is not the caller's business
            return False
        return True

    async def check(self) -> Health:
        mongodb = await self._mongodb()
        rabbitmq = self.rabbitmq_open()
        return Health(
            status="ok" if mongodb and rabbitmq else "unavailable",
            mongodb="ok" if mongodb else "down",
            rabbitmq="ok" if rabbitmq else "down",
        )
