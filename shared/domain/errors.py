"""The one error tree. Every failure a client can cause is a :class:`DialerError`.

The classes carry a stable machine-readable ``code`` and, for validation problems,
``details`` naming each bad field by its JSON path. Transport concerns (HTTP status
codes) are mapped from these classes in exactly one place: ``services.api.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ErrorDetail:
    """One problem: where (``loc``, a JSON path like ``("body", "call_records", 3)``) and what."""

    loc: Loc
    msg: str


class DialerError(Exception):
    """Base of every expected error; ``code`` is stable, ``message`` is for humans."""

    code = "internal_error"

    def __init__(self, message: str, details: Iterable[ErrorDetail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: Sequence[ErrorDetail] = tuple(details)


class Unauthorized(DialerError):
    """No API key, or a key nobody knows."""

    code = "unauthorized"


class Forbidden(DialerError):
    """The key is inactive, or the resource belongs to another firm."""

    code = "forbidden"


class NotFound(DialerError):
    """The campaign, call, phone number or route does not exist."""

    code = "not_found"


class Conflict(DialerError):
    """The resource is in a state that forbids the change (a call in progress or finished)."""

    code = "conflict"


class InvalidState(DialerError):
    """The campaign's status refuses the operation (for example appending to a final one)."""

    code = "invalid_state"


class ValidationFailed(DialerError):
    """The request is malformed; ``details`` lists every problem with its JSON path."""

    code = "validation_failed"


class PayloadTooLarge(DialerError):
    """The request body is larger than the configured limit."""

    code = "payload_too_large"


class UnsupportedMediaType(DialerError):
    """The request body is not declared as JSON."""

    code = "unsupported_media_type"


class MethodNotAllowed(DialerError):
    """The path exists but not with this HTTP method."""

    code = "method_not_allowed"


class ServiceUnavailable(DialerError):
    """A backing server (MongoDB, RabbitMQ) does not answer."""

    code = "service_unavailable"
