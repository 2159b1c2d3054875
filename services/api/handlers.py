"""HTTP handlers: parse and validate, call one service function, answer.

Routes of the contract are marked with :func:`requires_key`; the auth middleware has
already checked the key when they run.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.api import errors
from services.api.idempotency import idempotency_key, idempotently
from services.api.middleware import requires_key
from services.api.state import (
    DOCS_HTML,
    HEALTH,
    MAX_BODY_BYTES,
    OPENAPI,
    READ_TIMEOUT,
    SERVICE,
    api_key,
)
from shared.domain.errors import (
    ErrorDetail,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.domain.models import (
    AppendRecordsRequest,
    CreateCampaignRequest,
    DetailsQuery,
    ListCallsQuery,
)

M = TypeVar("M", bound=BaseModel)
#: Bodies larger than this are validated in a thread so the event loop keeps serving.
_THREAD_VALIDATION_BYTES = 1_000_000


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=model.model_dump_json().encode(), content_type="application/json"
    )


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated by ``model``: 415 if not JSON, 413 if too large, 408 if it
    does not arrive within ``READ_TIMEOUT`` (a stalled or trickling client), else 422."""
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"the body must be JSON (content-type: application/json), not {ctype!r}"
        )
    limit = request.app[MAX_BODY_BYTES]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    timeout = request.app[READ_TIMEOUT]
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        raise errors.RequestTimeout(
            f"the request body did not arrive within {timeout:g} seconds"
        ) from None
    try:
        if len(raw) > _THREAD_VALIDATION_BYTES:
            return await asyncio.to_thread(model.model_validate_json, raw)
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise errors.from_validation_error(exc, "body") from None
    except OverflowError:
        raise _out_of_range("body") from None


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string validated by ``model`` (unknown parameters are refused)."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise errors.from_validation_error(exc, "query") from None
    except OverflowError:
        raise _out_of_range("query") from None


def _out_of_range(where: str) -> ValidationFailed:
    """A datetime whose UTC value falls outside years 1-9999 (found by fuzzing): the models'
    validators let the OverflowError escape instead of a validation error."""
    what = "the request body is" if where == "body" else f"the {where} parameters are"
    return ValidationFailed(
        f"{what} invalid (1 problem(s))",
        [ErrorDetail((where,), "a datetime is out of range (years 1 to 9999 in UTC)")],
    )


@requires_key
async def create_campaign(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    body = await parse_body(request, CreateCampaignRequest)

    async def run() -> web.Response:
        result = await request.app[SERVICE].create(api_key(request).firm_id, body)
        return _json(result, 201)

    return await idempotently(request, key, body, run)


@requires_key
async def append_records(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    body = await parse_body(request, AppendRecordsRequest)

    async def run() -> web.Response:
        result = await request.app[SERVICE].append(
            api_key(request).firm_id, request.match_info["campaign_uuid"], body
        )
        return _json(result)

    return await idempotently(request, key, body, run)


@requires_key
async def list_calls(request: web.Request) -> web.Response:
    query = parse_query(request, ListCallsQuery)
    result = await request.app[SERVICE].list_calls(
        api_key(request).firm_id, request.match_info["campaign_uuid"], query
    )
    return _json(result)


@requires_key
async def delete_call(request: web.Request) -> web.Response:
    result = await request.app[SERVICE].delete_call(
        api_key(request).firm_id,
        request.match_info["campaign_uuid"],
        request.match_info["call_uuid"],
    )
    return _json(result)


@requires_key
async def delete_phone_number(request: web.Request) -> web.Response:
    result = await request.app[SERVICE].delete_phone(
        api_key(request).firm_id,
        request.match_info["campaign_uuid"],
        request.match_info["phone_number"],
    )
    return _json(result)


@requires_key
async def campaign_details(request: web.Request) -> web.Response:
    query = parse_query(request, DetailsQuery)
    result = await request.app[SERVICE].details(
        api_key(request).firm_id, request.match_info["campaign_uuid"], query
    )
    return _json(result)


async def health(request: web.Request) -> web.Response:
    report = await request.app[HEALTH].check()
    return _json(report, 200 if report.status == "ok" else 503)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=request.app[DOCS_HTML], content_type="text/html")
