"""Tenancy matrix: every endpoint x {no key, unknown key, inactive key, other firm's key}."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services import cli
from services.api.auth import KeyAuthenticator
from shared.config import ApiSettings
from shared.domain.errors import Forbidden, Unauthorized
from shared.storage.keys import ApiKey, ApiKeyRepository
from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_support import (
    FIRM_A,
    Api,
    phone,
    record,
    running_api,
)

BASE = "/api/v1/call-campaign"


#: key case → expected status and error code
CASES = {
    None: (401, "unauthorized"),
    "unknown": (401, "unauthorized"),
    "inactive": (403, "forbidden"),
    "b": (403, "forbidden"),
}

Request = tuple[str, str, Any]


def requests(uid: str, call: str, body: dict[str, Any]) -> dict[str, Request]:
    return {
        "create": ("POST", BASE, body),
        "append": ("POST", f"{BASE}/{uid}/call-records", {"call_records": [record(50)]}),
        "list": ("GET", f"{BASE}/{uid}/calls", None),
        "delete_call": ("DELETE", f"{BASE}/{uid}/calls/{call}", None),
        "delete_phone": ("DELETE", f"{BASE}/{uid}/phone-numbers/{phone(1)}", None),
        "details": ("GET", f"{BASE}/{uid}", None),
    }


@pytest.mark.parametrize("key", list(CASES), ids=["no-key", "unknown", "inactive", "other-firm"])
async def test_every_endpoint_refuses_and_changes_nothing(api: Api, key: str | None) -> None:
    created = await api.create(3, allow_dynamic_call_appending=True)
    uid = created["uuid"]
    call = (await api.calls(uid))[0]["_id"]
    body = {
        "call_campaign_name": "x",
        "start_at": created["start_at"],
        "end_at": created["end_at"],
        "call_records": [record(9)],
    }
    before = await api.snapshot()
    expected_status, expected_code = CASES[key]
    for name, (method, path, payload) in requests(uid, call, body).items():
        if name == "create" and key == "b":
            continue  # a create has no campaign yet: firm B creates its own (tested below)
        status, answer = await api.call(method, path, key=key, json_body=payload)
        assert status == expected_status, (name, answer)
        assert answer["error"]["code"] == expected_code, name
    assert await api.snapshot() == before
    assert api.events.received == api.events.of("campaign.created", uid)


async def test_a_campaign_belongs_to_the_firm_whose_key_created_it(api: Api) -> None:
    theirs = await api.create(1, key="b")
    assert (await api.campaign(theirs["uuid"]))["firm_id"] == "firm-b"
    status, _ = await api.call("GET", f"{BASE}/{theirs['uuid']}", key="b")
    assert status == 200
    status, _ = await api.call("GET", f"{BASE}/{theirs['uuid']}", key="a")
    assert status == 403


async def test_public_endpoints_need_no_key(api: Api) -> None:
    for path in ("/health", "/api/v1/openapi.json", "/api/v1/docs"):
        status, _ = await api.call("GET", path, key=None)
        assert status == 200, path


class FakeKeys:
    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.lookups = 0

    async def find_by_clear(self, clear: str) -> ApiKey | None:
        self.lookups += 1
        return self.key if clear == "good" else None


async def test_key_cache_expires_so_deactivation_takes_effect() -> None:
    now = [0.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731 - a tiny fake clock
    keys = FakeKeys(ApiKey("key_1", "firm", True, datetime.now(UTC)))
    auth = KeyAuthenticator(keys, ttl=2.0, monotonic=clock)
    assert (await auth.authenticate("good")).firm_id == "firm"
    keys.key = ApiKey("key_1", "firm", False, keys.key.created_at)
    assert (await auth.authenticate("good")).active  # cached
    assert keys.lookups == 1
    now[0] = 2.5
    with pytest.raises(Forbidden):
        await auth.authenticate("good")
    for clear in (None, "", "bad"):
        with pytest.raises(Unauthorized):
            await auth.authenticate(clear)


#: ``API_KEY_CACHE_SECONDS`` as shipped
KEY_CACHE_SECONDS: float = ApiSettings.model_fields["api_key_cache_seconds"].default
#: allowance for the request that observes the 403 (a local round trip) and the scheduler
MARGIN_SECONDS = 1.0


@pytest.fixture
async def shipped_cache_api(
    servers: Servers, mongo_db: Database, amqp_prefix: str
) -> AsyncIterator[Api]:
    async with running_api(
        servers, mongo_db, amqp_prefix, key_cache_seconds=KEY_CACHE_SECONDS
    ) as running:
        yield running


async def test_a_key_deactivated_with_the_cli_is_refused_within_the_cache_time(
    shipped_cache_api: Api, monkeypatch: pytest.MonkeyPatch, servers: Servers
) -> None:
    api = shipped_cache_api
    uid = (await api.create(1))["uuid"]
    key, clear = await ApiKeyRepository(api.db).create(FIRM_A, datetime.now(UTC))
    status, _ = await api.call("GET", f"{BASE}/{uid}", key=clear)
    assert status == 200  # looked up and cached as active

    monkeypatch.setenv("MONGODB_URL", servers.mongodb_url)
    monkeypatch.setenv("MONGODB_DB", api.db.name)
    deactivated = time.monotonic()  # before the command: the bound measured is the stricter
    assert await asyncio.to_thread(cli.main, ["keys", "deactivate", key.key_id]) == 0
    stored = await api.db["api_keys"].find_one({"_id": key.key_id})
    assert stored is not None and stored["active"] is False

    deadline = deactivated + KEY_CACHE_SECONDS + MARGIN_SECONDS
    while True:
        status, body = await api.call("GET", f"{BASE}/{uid}", key=clear)
        if status != 200:
            break
        assert time.monotonic() < deadline, "the deactivated key is still accepted"
        await asyncio.sleep(0.05)  # poll interval, not a wait for something to settle
    took = time.monotonic() - deactivated
    print(f"deactivated key refused after {took:.2f}s (cache {KEY_CACHE_SECONDS}s)")
    assert status == 403 and body["error"]["code"] == "forbidden", body
    assert took <= KEY_CACHE_SECONDS + MARGIN_SECONDS, took
    status, _ = await api.call("GET", f"{BASE}/{uid}")  # the firm's other key still works
    assert status == 200


def test_key_cache_setting_is_bounded_to_a_few_seconds() -> None:
    assert ApiSettings(api_key_cache_seconds=10).api_key_cache_seconds == 10
    for bad in (-1, 10.5, 3600):
        with pytest.raises(ValidationError):
            ApiSettings(api_key_cache_seconds=bad)
