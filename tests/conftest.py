"""Real servers for integration and end-to-end tests.

RabbitMQ: ``AMQP_URL`` if given; else a testcontainers RabbitMQ when a Docker engine
answers; else the local broker that ``make test`` installed and started.
MongoDB: ``MONGODB_URL`` if given; else a testcontainers MongoDB when Docker answers;
else an embedded SecantusDB process started for this test session.
Each test gets its own database and its own exchange/queue names. A missing server
fails loudly; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aio_pika
import pytest
from hypothesis import settings as hypothesis_settings

from services.stack import EmbeddedMongo, free_port
from shared.storage.mongo import Database, Document, ensure_indexes, make_client

hypothesis_settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None)
hypothesis_settings.load_profile("ci")


@dataclass(frozen=True)
class Servers:
    amqp_url: str
    mongodb_url: str


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    amqp_url = os.environ.get("AMQP_URL")
    mongodb_url = os.environ.get("MONGODB_URL")
    stack: list[object] = []
    embedded: EmbeddedMongo | None = None
    docker = (not amqp_url or not mongodb_url) and _docker_engine()
    if not amqp_url:
        if docker:
            from testcontainers.rabbitmq import RabbitMqContainer

            rabbit = RabbitMqContainer("rabbitmq:3.13-management").start()
            stack.append(rabbit)
            amqp_url = (
                f"amqp://guest:guest@{rabbit.get_container_host_ip()}:"
                f"{rabbit.get_exposed_port(5672)}/"
            )
        else:
            amqp_url = "amqp://guest:guest@127.0.0.1:5672/"
    if not mongodb_url:
        if docker:
            from testcontainers.mongodb import MongoDbContainer

            mongo = MongoDbContainer("mongo:7", command="--replSet rs0").start()
            stack.append(mongo)
            mongodb_url = mongo.get_connection_url() + "/?directConnection=true"
        else:
            embedded = EmbeddedMongo(free_port(), ":memory:")
            embedded.start()
            mongodb_url = embedded.url
    os.environ["TEST_AMQP_URL"] = amqp_url
    os.environ["TEST_MONGODB_URL"] = mongodb_url
    try:
        yield Servers(amqp_url=amqp_url, mongodb_url=mongodb_url)
    finally:
        if embedded is not None:
            embedded.stop()
        for container in stack:
            container.stop()  # type: ignore[attr-defined]


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def mongo_db(servers: Servers, test_id: str) -> AsyncIterator[Database]:
    """A fresh database with the project's indexes, dropped after the test."""
    client = make_client(servers.mongodb_url, "tests")
    db: Database = client[f"t_{test_id}"]
    await ensure_indexes(db)
    try:
        yield db
    finally:
        await client.drop_database(db.name)
        await client.close()


@pytest.fixture
async def amqp_prefix(servers: Servers, test_id: str) -> AsyncIterator[str]:
    """A fresh exchange/queue name prefix; everything under it is deleted after the test."""
    prefix = f"t{test_id}"
    yield prefix
    from shared.messaging.topology import Names, delete

    connection = await aio_pika.connect(servers.amqp_url)
    async with connection:
        await delete(await connection.channel(), Names(prefix))


@pytest.fixture
def service_env(servers: Servers, test_id: str, amqp_prefix: str) -> dict[str, str]:
    """Environment for a dialer process (or a settings object) wired to this test's names."""
    return {
        "AMQP_URL": servers.amqp_url,
        "MONGODB_URL": servers.mongodb_url,
        "MONGODB_DB": f"t_{test_id}",
        "AMQP_PREFIX": amqp_prefix,
        "LOG_JSON": "true",
    }


__all__ = ["Document", "Servers"]
