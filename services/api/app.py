"""The application factory: takes already-built dependencies (tests build it in-process)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.auth import KeyAuthenticator
from services.api.docs import render_docs
from services.api.middleware import auth_middleware, error_middleware
from services.api.openapi import build_openapi
from services.api.ratelimit import RateLimiter
from services.api.routes import add_routes
from services.api.state import (
    AUTHENTICATOR,
    DOCS_HTML,
    HEALTH,
    IDEMPOTENCY,
    MAX_BODY_BYTES,
    OPENAPI,
    RATE_LIMITER,
    READ_TIMEOUT,
    SERVICE,
    HealthCheck,
)
from shared.metrics import metrics
from shared.service.campaigns import CampaignService
from shared.storage.idempotency import IdempotencyStore

#: ``API_READ_TIMEOUT_SECONDS``'s default: the time a request body may take to arrive
READ_TIMEOUT_SECONDS = 60.0


def create_app(
    service: CampaignService,
    authenticator: KeyAuthenticator,
    health: HealthCheck,
    *,
    max_body_bytes: int,
    idempotency: IdempotencyStore | None = None,
    rate_limiter: RateLimiter | None = None,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> web.Application:
    """The aiohttp application of the Call Campaigns API.

    Without ``idempotency`` the Idempotency-Key header is ignored; without
    ``rate_limiter`` there is no rate limit.
    """
    app = web.Application(
        client_max_size=max_body_bytes, middlewares=[error_middleware, auth_middleware]
    )
    app[SERVICE] = service
    app[AUTHENTICATOR] = authenticator
    app[HEALTH] = health
    app[MAX_BODY_BYTES] = max_body_bytes
    app[IDEMPOTENCY] = idempotency
    app[RATE_LIMITER] = rate_limiter if rate_limiter is not None else RateLimiter(0, 1)
    app[READ_TIMEOUT] = read_timeout
    spec = build_openapi(max_body_bytes)
    app[OPENAPI] = spec
    app[DOCS_HTML] = render_docs(spec)
    add_routes(app)
    app.router.add_get("/metrics", serve_metrics)
    return app


def runner_options(read_timeout: float) -> dict[str, Any]:
    """Options of the ``web.AppRunner`` (or test server) that serves the app.

    aiohttp starts its keep-alive timer when a connection opens and after each answer,
    and does not restart it while request headers trickle in: a connection that has not
    sent a complete request ``read_timeout`` seconds after opening (or after its last
    answer) is closed. The body's own limit is ``READ_TIMEOUT`` in the handlers.
    """
    return {"access_log": None, "keepalive_timeout": read_timeout}


async def serve_metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this process's metrics (no API key; not in OpenAPI)."""
    body, content_type = metrics().render()
    return web.Response(body=body, headers={"Content-Type": content_type})
