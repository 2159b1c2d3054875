"""One error shape for every error, and never a 5xx for bad input (property-based)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_support import (
    Api,
    documented_example,
    record,
    running_api,
)

BASE = "/api/v1/call-campaign"


JSON = {"content-type": "application/json"}


def assert_shape(body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    for detail in error["details"]:
        assert set(detail) == {"loc", "msg"} and isinstance(detail["loc"], list)


async def test_unknown_route_and_wrong_method(api: Api) -> None:
    for path in ("/nope", "/api/v1/call-campaign/x/y/z", "/api/v2/call-campaign"):
        status, body = await api.call("GET", path)
        assert status == 404
        assert_shape(body)
        assert body["error"]["code"] == "not_found"
    async with api.client.request("PUT", BASE) as resp:
        assert resp.status == 405 and "POST" in resp.headers["Allow"]
        body = await resp.json()
    assert_shape(body)
    assert body["error"]["code"] == "method_not_allowed"


async def test_malformed_bodies_answer_422_with_the_shape(api: Api) -> None:
    cases: list[bytes] = [
        b"",
        b"{",
        b"[]",
        b"null",
        b"\xff\xfe",
        b'{"a": 1e999999}',
        b"[" * 100_000,
        b'{"call_campaign_name": "\\ud800"}',
    ]
    for raw in cases:
        status, body = await api.call("POST", BASE, data=raw, headers=JSON)
        assert status == 422, (raw[:20], body)
        assert_shape(body)
        assert body["error"]["details"][0]["loc"][0] == "body"


async def test_wrong_content_type_is_415(api: Api) -> None:
    raw = json.dumps(documented_example())
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, body = await api.call("POST", BASE, data=raw, headers={"content-type": ctype})
        assert status == 415, ctype
        assert_shape(body)
    assert await api.db["campaigns"].count_documents({}) == 0


async def test_huge_numbers_and_unknown_fields_are_422(api: Api) -> None:
    example = documented_example()
    for changes in (
        {"retry": 10**40},
        {"speed": -(10**40)},
        {"retry_interval": 1e308},
        {"unknown": 1},
        {"call_records": [record(1, variables={"n": 10**40})]},
        {"call_records": [record(1, variables={"x": "y" * 20_000})]},
    ):
        status, body = await api.call("POST", BASE, json_body={**example, **changes})
        assert status == 422, (changes, body)
        assert_shape(body)


async def test_bodies_over_the_limit_are_413(
    servers: Servers, mongo_db: Database, amqp_prefix: str
) -> None:
    async with running_api(servers, mongo_db, amqp_prefix, max_body_bytes=2000) as small:
        raw = json.dumps(
            {**documented_example(), "call_records": [record(i) for i in range(40)]}
        ).encode()
        assert len(raw) > 2000
        status, body = await small.call("POST", BASE, data=raw, headers=JSON)
        assert status == 413
        assert_shape(body)
        assert "2000 bytes" in body["error"]["message"]

        async def chunks() -> Any:  # no content-length: the limit is enforced while reading
            for i in range(0, len(raw), 500):
                yield raw[i : i + 500]

        async with small.client.post(
            BASE, data=chunks(), headers={**JSON, "x-cybernet-api-key": small.keys["a"]}
        ) as resp:
            assert resp.status == 413
            assert_shape(await resp.json())
        status, body = await small.call("POST", BASE, json_body=documented_example())
        assert status == 201
        assert await mongo_db["campaigns"].count_documents({}) == 1


# -- property-based: any request a client could send gets < 500 and the shape ------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [*documented_example(), "unknown"]
RECORD_FIELDS = ["phone_number", "language", "gender_voice", "agent_name", "variables", "x"]


@st.composite
def mutated_body(draw: st.DrawFn, append: bool) -> bytes:
    body: dict[str, Any] = {"call_records": [record(0)]} if append else documented_example()
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            records = body.get("call_records")
            rec = records[0] if isinstance(records, list) and records else None
            if isinstance(rec, dict):
                field = draw(st.sampled_from(RECORD_FIELDS))
                if draw(st.booleans()):
                    rec.pop(field, None)
                else:
                    rec[field] = draw(json_values)
                continue
        field = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            body.pop(field, None)
        else:
            body[field] = draw(json_values)
    return json.dumps(body).encode()


Request = tuple[str, str, bytes, str, dict[str, str]]


def requests(uid: str) -> st.SearchStrategy[Request]:
    ctypes = st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/problem+json",
            "text/plain",
            "",
        ]
    )
    raw = st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode())
    create: st.SearchStrategy[Request] = st.tuples(
        st.just("POST"), st.just(BASE), raw | mutated_body(False), ctypes, st.just({})
    )
    append: st.SearchStrategy[Request] = st.tuples(
        st.just("POST"),
        st.just(f"{BASE}/{uid}/call-records"),
        raw | mutated_body(True),
        ctypes,
        st.just({}),
    )
    text = st.text(max_size=12)
    params = st.dictionaries(
        st.sampled_from(
            ["page", "per_page", "status", "date", "call_uuid", "phone_number", "other"]
        ),
        text,
        max_size=3,
    )
    reads: st.SearchStrategy[Request] = st.tuples(
        st.just("GET"),
        st.sampled_from([f"{BASE}/{uid}", f"{BASE}/{uid}/calls"]),
        st.just(b""),
        st.just(""),
        params,
    )
    paths: st.SearchStrategy[Request] = st.tuples(
        st.sampled_from(["GET", "DELETE", "POST"]),
        st.builds(
            lambda a, b: f"{BASE}/{quote(a, safe='')}/phone-numbers/{quote(b, safe='')}", text, text
        )
        | st.builds(lambda a: f"{BASE}/{uid}/calls/{quote(a, safe='')}", text)
        | st.builds(lambda a: f"{BASE}/{quote(a, safe='')}", text),
        st.just(b""),
        st.just(""),
        st.just({}),
    )
    return create | append | reads | paths


async def test_fuzzed_requests_never_get_a_5xx(api: Api) -> None:
    created = await api.create(1, allow_dynamic_call_appending=True)
    loop = asyncio.get_running_loop()
    seen: set[int] = set()

    @settings(
        max_examples=300,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(created["uuid"]))
    def check(request: Request) -> None:
        method, path, data, ctype, params = request
        headers = {"content-type": ctype} if ctype else {}
        status, body = asyncio.run_coroutine_threadsafe(
            api.call(method, path, data=data, headers=headers, params=params), loop
        ).result(timeout=60)
        seen.add(status)
        assert status < 500, (request, body)
        if status >= 400:
            assert_shape(body)

    await asyncio.to_thread(check)
    assert {404, 415, 422} <= seen, seen
