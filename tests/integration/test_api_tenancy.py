"""Tenancy matrix: every endpoint x {no key, unknown key, inactive key, other firm's key}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.api.auth import KeyAuthenticator
from shared.domain.errors import Forbidden, Unauthorized
from shared.storage.keys import ApiKey
from tests.integration.test_api_support import (
    Api,
    phone,
    record,
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
    from datetime import UTC, datetime

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
