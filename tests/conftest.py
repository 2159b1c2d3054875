"""Real servers for integration and end-to-end tests.

RabbitMQ: ``AMQP_URL`` if given; else a RabbitMQ container (testcontainers) when a
Docker engine answers (``docker info``); else the local broker that ``make test``
installed and started.
MongoDB: ``MONGODB_URL`` if given; else a ``mongo:7`` container run as a one-node replica
set when Docker answers; else an embedded SecantusDB process started for this test session.
Each test gets its own database and its own exchange/queue names. A missing server
fails loudly; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
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


def _rabbitmq_container(stack: ExitStack) -> str:
    """A throwaway RabbitMQ (stopped with ``stack``); returns its AMQP URL."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    rabbit = stack.enter_context(
        DockerContainer("rabbitmq:3.13-management")
        .with_exposed_ports(5672)
        .waiting_for(LogMessageWaitStrategy("Server startup complete").with_startup_timeout(180))
    )
    # The image lets guest log in from outside the container.
    return f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"


def _mongo_container(stack: ExitStack) -> str:
    """A throwaway one-node replica set (transactions need one), without auth; its URL."""
    from pymongo import MongoClient
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    mongo = stack.enter_context(
        DockerContainer("mongo:7")
        .with_command(["mongod", "--replSet", "rs0", "--bind_ip_all"])
        .with_exposed_ports(27017)
        .waiting_for(LogMessageWaitStrategy("Waiting for connections").with_startup_timeout(180))
    )
    host, port = mongo.get_container_host_ip(), mongo.get_exposed_port(27017)
    url = f"mongodb://{host}:{port}/?directConnection=true"
    client: MongoClient[Document] = MongoClient(url, serverSelectionTimeoutMS=30_000)
    with client:
        # The member's address is the one mongod knows itself by, inside the container.
        config = {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]}
        client.admin.command("replSetInitiate", config)
        deadline = time.monotonic() + 60
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: no primary 60 s after replSetInitiate")
            time.sleep(0.2)
    return url


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    amqp_url = os.environ.get("AMQP_URL")
    mongodb_url = os.environ.get("MONGODB_URL")
    docker = (not amqp_url or not mongodb_url) and _docker_engine()
    with ExitStack() as stack:  # stops whatever was started, even if a later start fails
        if not amqp_url:
            if docker:
                amqp_url = _rabbitmq_container(stack)
            else:
                amqp_url = "amqp://guest:guest@127.0.0.1:5672/"
        if not mongodb_url:
            if docker:
                mongodb_url = _mongo_container(stack)
            else:
                embedded = EmbeddedMongo(free_port(), ":memory:")
                embedded.start()
                stack.callback(embedded.stop)
                mongodb_url = embedded.url
        os.environ["TEST_AMQP_URL"] = amqp_url
        os.environ["TEST_MONGODB_URL"] = mongodb_url
        yield Servers(amqp_url=amqp_url, mongodb_url=mongodb_url)


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
