"""Hostile clients: malformed and huge headers, stalled and trickling clients, floods.

After each, the API still answers: /health is 200 and a normal request succeeds.
Raw sockets are used where a well-behaved HTTP client would refuse to misbehave.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

import pytest

from services.api.ratelimit import RateLimiter
from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_errors import assert_shape
from tests.integration.test_api_support import Api, running_api

BASE = "/api/v1/call-campaign"
READ_TIMEOUT = 1.0


@pytest.fixture
async def api(servers: Servers, mongo_db: Database, amqp_prefix: str) -> AsyncIterator[Api]:
    async with running_api(servers, mongo_db, amqp_prefix, read_timeout=READ_TIMEOUT) as running:
        yield running


async def still_serving(api: Api) -> None:
    """/health answers 200 and a normal request works."""
    assert (await api.call("GET", "/health", key=None))[0] == 200
    created = await api.create(1)
    status, page = await api.call("GET", f"{BASE}/{created['uuid']}/calls")
    assert status == 200 and page["total"] == 1


async def open_raw(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = api.client.server
    return await asyncio.open_connection(server.host, server.port)


async def raw_exchange(api: Api, request: bytes, within: float = 10) -> tuple[int, bytes]:
    """Send raw bytes, read until the server closes: the status and the whole answer."""
    reader, writer = await open_raw(api)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return (int(found.group(1)) if found else 0), answer


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP answer (the server may keep the socket open a while: aiohttp lingers to
    drain an unread body before it closes)."""
    header = await reader.readuntil(b"\r\n\r\n")
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", header)
    assert found, header
    length = re.search(rb"(?i)content-length: (\d+)", header)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return int(found.group(1)), body


def head(lines: list[str], path: str = "/health", method: str = "GET") -> bytes:
    text = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    return (text + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode("latin-1")


@pytest.mark.parametrize(
    "header",
    [
        "X-Evil: a\rInjected: yes",  # bare CR inside a value
        "X-Evil: a\r Injected: yes",
        "X-Evil: a\x00b",  # NUL
        "Idempotency-Key: a\rb",
        "X-Evil : spaced name",  # whitespace before the colon (request smuggling vector)
        "Bad Name: x",
    ],
)
async def test_control_characters_in_headers_are_400(api: Api, header: str) -> None:
    status, answer = await raw_exchange(api, head([header]))
    assert status == 400, answer
    assert b"Injected" not in answer.split(b"\r\n\r\n")[0]  # nothing reflected as a header
    await still_serving(api)


async def test_a_bare_lf_does_not_smuggle_a_header_into_the_answer(api: Api) -> None:
    status, answer = await raw_exchange(api, head(["X-Evil: a\nSet-Cookie: owned=1"]))
    assert status == 400, answer
    assert b"set-cookie" not in answer.split(b"\r\n\r\n")[0].lower()
    await still_serving(api)


async def test_header_injection_through_the_client_is_refused_before_sending(api: Api) -> None:
    with pytest.raises(ValueError):
        await api.call("GET", "/health", key=None, headers={"X-Evil": "a\r\nInjected: yes"})
    await still_serving(api)


@pytest.mark.parametrize(
    "lines",
    [
        [f"X-Huge: {'a' * 100_000}"],  # one value far beyond aiohttp's 8190 bytes
        [f"X-Many-{i}: {i}" for i in range(500)],  # more headers than allowed
        [f"x-cybernet-api-key: {'k' * 20_000}"],
    ],
    ids=["huge-value", "too-many", "huge-api-key"],
)
async def test_huge_headers_are_refused_not_a_crash(api: Api, lines: list[str]) -> None:
    status, _ = await raw_exchange(api, head(lines, BASE, "POST"))
    assert status in (400, 431)
    await still_serving(api)


async def test_a_huge_request_line_is_refused(api: Api) -> None:
    status, _ = await raw_exchange(api, head([], BASE + "/" + "x" * 100_000))
    assert status in (400, 414, 431)
    await still_serving(api)


def post_head(api: Api, length: int) -> bytes:
    return head(
        [
            f"x-cybernet-api-key: {api.keys['a']}",
            "Content-Type: application/json",
            f"Content-Length: {length}",
        ],
        BASE,
        "POST",
    )


async def test_a_stalled_body_is_408_and_others_are_served_meanwhile(api: Api) -> None:
    reader, writer = await open_raw(api)
    try:
        writer.write(post_head(api, 1000) + b'{"call_campaign_name": "sl')
        await writer.drain()
        started = time.monotonic()
        answer = asyncio.create_task(read_answer(reader))
        await still_serving(api)  # while the stalled request waits
        status, raw = await asyncio.wait_for(answer, 10)
    finally:
        writer.close()
    assert status == 408
    assert time.monotonic() - started < READ_TIMEOUT + 5
    body = json.loads(raw)
    assert_shape(body)
    assert body["error"]["code"] == "request_timeout"
    await still_serving(api)


async def test_a_body_trickling_a_byte_at_a_time_is_cut_off(api: Api) -> None:
    body = json.dumps({"call_campaign_name": "x" * 500}).encode()
    reader, writer = await open_raw(api)
    answer = asyncio.create_task(read_answer(reader))

    async def trickle() -> None:
        writer.write(post_head(api, len(body)))
        for i in range(len(body)):
            if answer.done():
                return
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.05)  # the client's own pace: 20 bytes a second

    sender = asyncio.create_task(trickle())
    try:
        status, raw = await asyncio.wait_for(answer, 10)
    finally:
        sender.cancel()
        writer.close()
    assert status == 408, raw
    await still_serving(api)


async def test_a_connection_that_never_finishes_its_headers_is_closed(api: Api) -> None:
    reader, writer = await open_raw(api)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        await writer.drain()
        started = time.monotonic()
        data = await asyncio.wait_for(reader.read(), 30)  # EOF: the server hung up
    finally:
        writer.close()
    assert data == b"" or data.startswith(b"HTTP/1.1 4")
    assert time.monotonic() - started < READ_TIMEOUT + 5
    await still_serving(api)


async def test_a_flood_of_requests_and_idle_connections(api: Api) -> None:
    idle = [await open_raw(api) for _ in range(200)]  # connections that never send anything
    try:
        campaign = await api.create(5)
        paths = ["/health", f"{BASE}/{campaign['uuid']}", f"{BASE}/{campaign['uuid']}/calls"]
        answers = await asyncio.gather(
            *(api.call("GET", paths[i % len(paths)]) for i in range(600))
        )
        assert {status for status, _ in answers} == {200}
        await still_serving(api)
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_flood_over_the_rate_limit_is_429_never_5xx(
    servers: Servers, mongo_db: Database, amqp_prefix: str
) -> None:
    limiter = RateLimiter(per_second=50, burst=100)  # the defaults
    async with running_api(servers, mongo_db, amqp_prefix, rate_limiter=limiter) as api:
        answers = await asyncio.gather(
            *(api.call("GET", f"{BASE}/00000000-0000-4000-8000-000000000000") for _ in range(400))
        )
        statuses = [status for status, _ in answers]
        assert set(statuses) == {404, 429}
        assert 100 <= statuses.count(404) < 200
        for _, body in answers:
            assert_shape(body)
        assert (await api.call("GET", "/health", key=None))[0] == 200
        missing = f"{BASE}/00000000-0000-4000-8000-000000000000"
        assert (await api.call("GET", missing, key="b"))[0] == 404  # another key: its own bucket


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start_at", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        ("end_at", "9999-12-31T23:59:59-01:00"),  # after year 9999 in UTC
    ],
)
async def test_datetimes_beyond_the_calendar_are_422(api: Api, field: str, value: str) -> None:
    body = {
        "call_campaign_name": "far",
        "start_at": "2026-01-15T09:00:00Z",
        "end_at": "2026-01-15T18:00:00Z",
        "call_records": [],
        field: value,
    }
    status, answer = await api.call("POST", BASE, json_body=body)
    assert status == 422
    assert_shape(answer)
    status, answer = await api.call(
        "GET", f"{BASE}/00000000-0000-4000-8000-000000000000", params={"date": value}
    )
    assert status == 422
    assert answer["error"]["details"][0]["loc"] == ["query"]
    await still_serving(api)
