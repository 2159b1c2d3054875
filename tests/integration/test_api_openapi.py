"""The OpenAPI document, the docs page and /health (ok, and 503 naming what is down)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC

import pytest
from openapi_spec_validator import validate
from pymongo import AsyncMongoClient

from services.api.app import create_app
from services.api.auth import KeyAuthenticator
from services.api.health import DependencyHealth
from services.api.openapi import DOCUMENTED_EXAMPLE
from services.api.state import OPENAPI
from services.stack import free_port
from shared.clock import ScaledClock
from shared.service.campaigns import CampaignService
from shared.storage.keys import ApiKeyRepository
from shared.storage.mongo import Database, Document
from tests.conftest import Servers
from tests.integration.test_api_support import Api, running_api

CONTRACT = {  # the endpoint table of CONTRACT.md: success and error codes
    ("post", "/api/v1/call-campaign"): ("201", {"401", "403", "422"}),
    ("post", "/api/v1/call-campaign/{campaign_uuid}/call-records"): (
        "200",
        {"400", "401", "403", "404", "422"},
    ),
    ("get", "/api/v1/call-campaign/{campaign_uuid}/calls"): ("200", {"401", "403", "404", "422"}),
    ("delete", "/api/v1/call-campaign/{campaign_uuid}/calls/{call_uuid}"): (
        "200",
        {"401", "403", "404", "409"},
    ),
    ("delete", "/api/v1/call-campaign/{campaign_uuid}/phone-numbers/{phone_number}"): (
        "200",
        {"401", "403", "404", "409", "422"},
    ),
    ("get", "/api/v1/call-campaign/{campaign_uuid}"): ("200", {"401", "403", "404", "422"}),
}
#: What any endpoint with a key can also answer: rate limit, MongoDB unreachable.
KEYED = {"429", "503"}
#: What reading a body can answer: too slow, Idempotency-Key in use, too large, not JSON.
BODY = {"408", "409", "413", "415"}
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture
async def api(servers: Servers, mongo_db: Database, amqp_prefix: str) -> AsyncIterator[Api]:
    async with running_api(servers, mongo_db, amqp_prefix) as running:
        yield running


async def test_openapi_validates_and_covers_the_contract(api: Api) -> None:
    status, spec = await api.call("GET", "/api/v1/openapi.json", key=None)
    assert status == 200
    validate(spec)  # OpenAPI 3.1 schema
    assert spec["openapi"].startswith("3.1")
    for (method, path), (success, errors) in CONTRACT.items():
        op = spec["paths"][path][method]
        documented = set(op["responses"])
        assert success in documented and errors | KEYED <= documented, (method, path)
        if method == "post":
            assert documented >= BODY, (method, path)
        else:
            assert not {"408", "413", "415"} & documented, (method, path)  # no body read
        assert op["security"] == [{"ApiKey": []}]
        for code in documented - {success}:
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == ERROR_SCHEMA, (method, path, code)
        assert "Retry-After" in op["responses"]["429"]["headers"]
    health = spec["paths"]["/health"]["get"]["responses"]["503"]
    assert health["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"
    }
    create = spec["paths"]["/api/v1/call-campaign"]["post"]["requestBody"]
    assert create["content"]["application/json"]["example"] == DOCUMENTED_EXAMPLE
    schemas = spec["components"]["schemas"]
    assert set(schemas["CreateCampaignRequest"]["properties"]) == set(DOCUMENTED_EXAMPLE)
    assert schemas["CreateCampaignRequest"]["additionalProperties"] is False
    call = set(schemas["Call"]["properties"])
    assert {
        "uuid",
        "campaign_uuid",
        "attempts",
        "max_attempts",
        "next_attempt_at",
        "result",
        "attempt_history",
    } <= call
    details = {
        p["name"]
        for p in spec["paths"]["/api/v1/call-campaign/{campaign_uuid}"]["get"]["parameters"]
    }
    assert details == {
        "campaign_uuid",
        "page",
        "per_page",
        "date",
        "status",
        "call_uuid",
        "phone_number",
    }
    assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "x-cybernet-api-key"


async def test_docs_page_is_self_contained_html(api: Api) -> None:
    status, page = await api.call("GET", "/api/v1/docs", key=None)
    assert status == 200 and page.startswith("<!doctype html>")
    assert not re.search(r"(src|href)=\"https?://", page), "no external assets"
    for path in (
        "/api/v1/call-campaign/{campaign_uuid}/phone-numbers/{phone_number}",
        "/api/v1/call-campaign/{campaign_uuid}/calls",
    ):
        assert path in page
    assert "January Outreach" in page


async def test_health_ok(api: Api) -> None:
    status, body = await api.call("GET", "/health", key=None)
    assert (status, body) == (200, {"status": "ok", "mongodb": "ok", "rabbitmq": "ok"})


async def test_health_503_and_endpoints_503_when_mongodb_is_down(api: Api) -> None:
    dead: AsyncMongoClient[Document] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        tz_aware=True,
        tzinfo=UTC,
        serverSelectionTimeoutMS=300,
        connectTimeoutMS=300,
    )
    try:
        db = dead["down"]
        app = create_app(
            CampaignService(db, _NoEvents(), ScaledClock(), default_firm_max_speed=5),
            KeyAuthenticator(ApiKeyRepository(db), 0),
            DependencyHealth(db, lambda: False, timeout=1),
            max_body_bytes=1024,
        )
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(app)) as client:
            async with client.get("/health") as resp:
                assert resp.status == 503
                assert await resp.json() == {
                    "status": "unavailable",
                    "mongodb": "down",
                    "rabbitmq": "down",
                }
            spec = app[OPENAPI]
            uid = "00000000-0000-4000-8000-000000000000"
            for method, template in CONTRACT:
                path = template.format(campaign_uuid=uid, call_uuid=uid, phone_number="77010000001")
                body: dict[str, list[str]] | None = (
                    {"call_records": []} if method == "post" else None
                )
                async with client.request(
                    method, path, json=body, headers={"x-cybernet-api-key": "k"}
                ) as resp:
                    assert resp.status == 503, (method, template)
                    answer = await resp.json()
                    assert answer["error"]["code"] == "service_unavailable"
                assert "503" in spec["paths"][template][method]["responses"]
    finally:
        await dead.close()


class _NoEvents:
    async def send(self, entries: object) -> None:
        raise AssertionError("nothing is published when nothing changed")
