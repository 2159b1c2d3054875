"""Middlewares: errors to the one JSON shape, API-key authentication and rate limit, access
log."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from aiohttp import web

from services.api import errors
from services.api.auth import HEADER
from services.api.errors import RateLimited
from services.api.state import API_KEY, AUTHENTICATOR, RATE_LIMITER
from shared.domain.errors import DialerError
from shared.metrics import metrics

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
_PROTECTED = "__requires_api_key__"


def requires_key(handler: H) -> H:
    """Mark a handler as needing a valid ``x-cybernet-api-key``."""
    setattr(handler, _PROTECTED, True)
    return handler


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to the error shape; log the request with its outcome."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except DialerError as exc:
        response = errors.from_dialer_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = errors.from_http_exception(exc, request)
    except Exception as exc:
        log.exception("request failed", method=request.method, path=request.path)
        response = errors.from_unexpected(exc)
    elapsed = time.perf_counter() - started
    log.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round(elapsed * 1000, 1),
    )
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    m = metrics()
    m.api_requests.labels(route=route, method=request.method, status=str(response.status)).inc()
    m.api_request_seconds.labels(route=route, method=request.method).observe(elapsed)
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate protected routes and apply the key's rate limit, before the body is read."""
    if getattr(request.match_info.handler, _PROTECTED, False):
        key = await request.app[AUTHENTICATOR].authenticate(request.headers.get(HEADER))
        wait = request.app[RATE_LIMITER].acquire(key.key_id)
        if wait:
            raise RateLimited(
                f"too many requests for this API key: the limit is "
                f"{request.app[RATE_LIMITER].per_second:g} per second "
                f"(bursts of {request.app[RATE_LIMITER].burst:g}); retry in {wait} s",
                retry_after=wait,
            )
        request[API_KEY] = key
        with structlog.contextvars.bound_contextvars(firm_id=key.firm_id, key_id=key.key_id):
            return await handler(request)
    return await handler(request)
