"""The application factory: takes already-built dependencies (tests build it in-process)."""

from __future__ import annotations

from aiohttp import web

from services.api.auth import KeyAuthenticator
from services.api.docs import render_docs
from services.api.middleware import auth_middleware, error_middleware
from services.api.openapi import build_openapi
from services.api.routes import add_routes
from services.api.state import (
    AUTHENTICATOR,
    DOCS_HTML,
    HEALTH,
    MAX_BODY_BYTES,
    OPENAPI,
    SERVICE,
    HealthCheck,
)
from shared.metrics import metrics
from shared.service.campaigns import CampaignService


def create_app(
    service: CampaignService,
    authenticator: KeyAuthenticator,
    health: HealthCheck,
    *,
    max_body_bytes: int,
) -> web.Application:
    """The aiohttp application of the Call Campaigns API."""
    app = web.Application(
        client_max_size=max_body_bytes, middlewares=[error_middleware, auth_middleware]
    )
    app[SERVICE] = service
    app[AUTHENTICATOR] = authenticator
    app[HEALTH] = health
    app[MAX_BODY_BYTES] = max_body_bytes
    spec = build_openapi(max_body_bytes)
    app[OPENAPI] = spec
    app[DOCS_HTML] = render_docs(spec)
    add_routes(app)
    app.router.add_get("/metrics", serve_metrics)
    return app


async def serve_metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this process's metrics (no API key; not in OpenAPI)."""
    body, content_type = metrics().render()
    return web.Response(body=body, headers={"Content-Type": content_type})
