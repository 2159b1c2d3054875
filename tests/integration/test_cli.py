"""`dialer keys ...`: the real console script against this test's database.

A created key authenticates through the API's authenticator, only its hash is stored,
the clear key is printed once (never listed), and deactivation takes effect.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from services.api.auth import KeyAuthenticator
from shared.domain.errors import Forbidden
from shared.storage.keys import ApiKey, ApiKeyRepository
from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.support.processes import DIALER

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Dialer = Callable[..., Awaitable[Run]]


@pytest.fixture
def dialer(servers: Servers, mongo_db: Database) -> Dialer:
    env = {**os.environ, "MONGODB_URL": servers.mongodb_url, "MONGODB_DB": mongo_db.name}

    async def run(*args: str) -> Run:
        proc = await asyncio.create_subprocess_exec(
            DIALER,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(), err.decode())

    return run


def strings_in(value: Any) -> list[str]:
    """Every string anywhere in a stored document."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *strings_in(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


async def authenticate(db: Database, clear: str) -> ApiKey:
    return await KeyAuthenticator(ApiKeyRepository(db), ttl=0).authenticate(clear)


async def test_create_json_prints_one_object_and_stores_only_the_hash(
    dialer: Dialer, mongo_db: Database
) -> None:
    run = await dialer("keys", "create", "--firm", "acme", "--json")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 1, run.out
    created = json.loads(lines[0])
    assert isinstance(created, dict)
    assert set(created) == {"key_id", "key", "firm"}
    assert created["firm"] == "acme"
    clear = created["key"]

    key = await authenticate(mongo_db, clear)
    assert (key.key_id, key.firm_id, key.active) == (created["key_id"], "acme", True)
    docs = await mongo_db["api_keys"].find({}).to_list()
    assert [d["_id"] for d in docs] == [created["key_id"]]
    assert docs[0]["key_hash"] == hashlib.sha256(clear.encode()).hexdigest()
    assert not any(clear in s for d in docs for s in strings_in(d))


async def test_create_plain_list_and_deactivate(dialer: Dialer, mongo_db: Database) -> None:
    run = await dialer("keys", "create", "--firm", "globex")
    assert run.code == 0, run.err
    printed_id = re.search(r"^key id:\s*(\S+)$", run.out, re.M)
    printed_key = re.search(r"^key:\s*(\S+)$", run.out, re.M)
    assert printed_id and printed_key, run.out
    key_id, clear = printed_id[1], printed_key[1]
    assert (await authenticate(mongo_db, clear)).key_id == key_id

    listed = await dialer("keys", "list")
    assert listed.code == 0, listed.err
    assert clear not in listed.out
    row = [line.split() for line in listed.out.splitlines() if key_id in line]
    assert len(row) == 1 and row[0][:3] == [key_id, "globex", "True"], listed.out
    as_json = await dialer("keys", "list", "--json")
    assert clear not in as_json.out
    entries = json.loads(as_json.out)
    assert [(e["key_id"], e["firm"], e["active"]) for e in entries] == [(key_id, "globex", True)]

    off = await dialer("keys", "deactivate", key_id)
    assert off.code == 0, off.err
    assert key_id in off.out
    doc = await mongo_db["api_keys"].find_one({"_id": key_id})
    assert doc is not None
    assert doc["active"] is False and doc["deactivated_at"] is not None
    with pytest.raises(Forbidden):
        await authenticate(mongo_db, clear)
    listed = await dialer("keys", "list")
    row = [line.split() for line in listed.out.splitlines() if key_id in line]
    assert len(row) == 1 and row[0][:3] == [key_id, "globex", "False"], listed.out
    entries = json.loads((await dialer("keys", "list", "--json")).out)
    assert [e["active"] for e in entries] == [False]


async def test_deactivating_an_unknown_key_fails_clearly(
    dialer: Dialer, mongo_db: Database
) -> None:
    run = await dialer("keys", "deactivate", "key_doesnotexist")
    assert run.code != 0
    assert "no such key: key_doesnotexist" in run.err
    assert run.out == ""
    assert await mongo_db["api_keys"].count_documents({}) == 0
