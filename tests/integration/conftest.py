"""The API under test, in-process on real servers, for every integration test that asks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_support import Api, running_api


@pytest.fixture
async def api(servers: Servers, mongo_db: Database, amqp_prefix: str) -> AsyncIterator[Api]:
    async with running_api(servers, mongo_db, amqp_prefix) as running:
        yield running
