"""Typed keys of what the application and a request carry."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from services.api.auth import KeyAuthenticator
from services.api.ratelimit import RateLimiter
from shared.domain.models import Health
from shared.service.campaigns import CampaignService
from shared.storage.idempotency import IdempotencyStore
from shared.storage.keys import ApiKey


class HealthCheck(Protocol):
    """Reports whether MongoDB and RabbitMQ answer."""

    async def check(self) -> Health: ...


SERVICE = web.AppKey("service", CampaignService)
AUTHENTICATOR = web.AppKey("authenticator", KeyAuthenticator)
HEALTH = web.AppKey("health", HealthCheck)
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)
OPENAPI = web.AppKey("openapi", dict[str, Any])
DOCS_HTML = web.AppKey("docs_html", str)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
#: None: the Idempotency-Key header is ignored (only tests that do not need it build that)
IDEMPOTENCY: web.AppKey[IdempotencyStore | None] = web.AppKey("idempotency")
#: seconds a request body may take to arrive (408 after)
READ_TIMEOUT = web.AppKey("read_timeout", float)

#: request key holding the authenticated :class:`ApiKey`
API_KEY = web.RequestKey("api_key", ApiKey)


def api_key(request: web.Request) -> ApiKey:
    """The caller's key, set by the auth middleware on protected routes."""
    return request[API_KEY]
