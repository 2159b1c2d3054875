"""The one place where errors become HTTP answers.

Every error answer, whatever raised it (the error tree, pydantic, aiohttp's router
or body limit, an unreachable database), has the shape of
:class:`shared.domain.models.ErrorResponse`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure

from services.api.state import MAX_BODY_BYTES
from shared.domain.errors import (
    Conflict,
    DialerError,
    ErrorDetail,
    Forbidden,
    InvalidState,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.domain.models import ErrorBody, ErrorDetailOut, ErrorResponse


class RequestTimeout(DialerError):
    """The client did not send its request body in time (``API_READ_TIMEOUT_SECONDS``)."""

    code = "request_timeout"


class RateLimited(DialerError):
    """The API key sent more requests than its rate limit allows; retry after a while."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IdempotencyKeyReused(ValidationFailed):
    """The Idempotency-Key was first used with a different request."""

    code = "idempotency_key_reused"


class IdempotencyKeyInUse(Conflict):
    """The first request with this Idempotency-Key is still running."""

    code = "idempotency_key_in_use"


#: HTTP status of each class of the error tree (the most specific class wins).
HTTP_STATUS: dict[type[DialerError], int] = {
    InvalidState: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    RequestTimeout: 408,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    RateLimited: 429,
    ServiceUnavailable: 503,
}
#: At most this many problems are listed in one answer (a 100,000-record body can have more).
MAX_DETAILS = 1000


def status_of(exc: DialerError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = ErrorResponse(
        error=ErrorBody(
            code=code,
            message=message,
            details=[ErrorDetailOut(loc=list(d.loc), msg=d.msg) for d in details[:MAX_DETAILS]],
        )
    )
    return web.Response(
        status=status,
        body=body.model_dump_json().encode(),
        content_type="application/json",
        headers=headers,
    )


def from_dialer_error(exc: DialerError) -> web.Response:
    message = exc.message
    if len(exc.details) > MAX_DETAILS:
        message += f" (the first {MAX_DETAILS} of {len(exc.details)} problems are listed)"
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, IdempotencyKeyInUse):
        headers = {"Retry-After": "1"}
    response = error_response(status_of(exc), exc.code, message, exc.details, headers)
    if isinstance(exc, RequestTimeout):
        response.force_close()  # the rest of the body is not worth waiting for
    return response


def from_validation_error(exc: ValidationError, where: str) -> ValidationFailed:
    """pydantic's errors → one :class:`ValidationFailed` with JSON paths under ``where``."""
    details = [
        ErrorDetail((where, *err["loc"]), _message(err["type"], err["msg"]))
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    what = "the request body is" if where == "body" else f"the {where} parameters are"
    return ValidationFailed(f"{what} invalid ({len(details)} problem(s))", details)


def _message(error_type: str, msg: str) -> str:
    if error_type == "extra_forbidden":
        return "unknown field"
    return msg


def from_http_exception(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's own answers (unknown route, wrong method, body too large) in our shape."""
    status = exc.status
    if status == 404:
        return from_dialer_error(NotFound(f"no such endpoint: {request.method} {request.path}"))
    if status == 405:
        allow = exc.headers.get("Allow", "")
        return error_response(
            405,
            MethodNotAllowed.code,
            f"method {request.method} is not allowed here; allowed: {allow}",
            headers={"Allow": allow},
        )
    if status == 413:
        return from_dialer_error(
            PayloadTooLarge(
                f"request body is larger than the limit of {request.app[MAX_BODY_BYTES]} bytes"
            )
        )
    code = exc.reason.lower().replace(" ", "_") if exc.reason else "http_error"
    return error_response(status, code, exc.text or exc.reason or "error")


def from_unexpected(exc: BaseException) -> web.Response:
    if isinstance(exc, ConnectionFailure):
        return from_dialer_error(ServiceUnavailable("the database is not reachable; try again"))
    return error_response(500, DialerError.code, "internal error")
