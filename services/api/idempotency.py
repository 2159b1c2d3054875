"""The ``Idempotency-Key`` header of the POST endpoints (Stripe's semantics).

A client that sends a key and retries the same request (after a timeout, a dropped
connection) gets the first answer again, byte for byte, with ``Idempotent-Replayed: true``;
the work is done once. Keys are scoped per firm and kept ``IDEMPOTENCY_TTL_SECONDS``.

- The first answer is kept whatever its status once the operation has run (201/200, and
  400, 403, 404 from the campaign's state or owner), except: a request refused as invalid
  (413, 415, 422: nothing was done, the client fixes and retries with the same key) and a
  failure of ours (5xx, an exception): the key is released and the retry runs afresh.
- The same key with a different request (another body, endpoint or campaign): **422**
  ``idempotency_key_reused``.
- The same key while its first request is still running: **409**
  ``idempotency_key_in_use`` with ``Retry-After: 1`` at once (no waiting: the first may
  take a minute for a large campaign, and the client decides when to come back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from pydantic import BaseModel

from services.api import errors
from services.api.state import IDEMPOTENCY, api_key
from shared.domain.errors import DialerError, ErrorDetail, ValidationFailed
from shared.storage.idempotency import (
    Claimed,
    IdempotencyStore,
    InProgress,
    Mismatch,
    Replay,
    fingerprint,
)

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_LENGTH = 255
#: visible ASCII, no spaces: what UUIDs, ULIDs and random tokens are made of
PATTERN = "^[!-~]{1,255}$"
#: answers that are not kept: the request was refused before anything was done
_NOT_KEPT = frozenset({408, 413, 415, 422, 429})
_LOC = ("header", HEADER)


def idempotency_key(request: web.Request) -> str | None:
    """The header's value, None if absent; 422 if it is empty, too long or not visible ASCII."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise ValidationFailed(
            f"invalid {HEADER} header", [ErrorDetail(_LOC, "send the header once")]
        )
    value = values[0]
    if not 1 <= len(value) <= MAX_LENGTH or not all("!" <= ch <= "~" for ch in value):
        raise ValidationFailed(
            f"invalid {HEADER} header",
            [
                ErrorDetail(
                    _LOC,
                    f"must be 1 to {MAX_LENGTH} visible ASCII characters (no spaces), "
                    "for example a UUID",
                )
            ],
        )
    return value


def request_fingerprint(operation: str, path_params: Mapping[str, str], body: BaseModel) -> str:
    """SHA-256 of the operation, its path parameters and the canonical (validated) body.

    Canonical: the body as the model validated it, so key order, spacing and defaults
    left out or written out do not make a retry a different request.
    """
    params = "\n".join(f"{k}={v}" for k, v in sorted(path_params.items()))
    return fingerprint(operation, params, body.model_dump_json())


async def idempotently(
    request: web.Request,
    key: str | None,
    body: BaseModel,
    run: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    """Answer with ``run()``, at most once per (firm, key) and request; see the module doc."""
    store = request.app[IDEMPOTENCY]
    if key is None or store is None:
        return await run()
    fp = await _fingerprint(request, body)
    begun = await store.begin(api_key(request).firm_id, key, fp)
    if isinstance(begun, Replay):
        return web.Response(
            status=begun.status,
            body=begun.body,
            content_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )
    if isinstance(begun, Mismatch):
        raise errors.IdempotencyKeyReused(
            f"this {HEADER} was already used with a different request",
            [
                ErrorDetail(
                    _LOC,
                    "a key can be reused only for a retry of the same request (same endpoint "
                    "and body); use a new key for a new request",
                )
            ],
        )
    if isinstance(begun, InProgress):
        raise errors.IdempotencyKeyInUse(
            f"a request with this {HEADER} is still in progress; retry after it finishes "
            "to get its answer"
        )
    # Shielded: a client that disconnects does not cancel the work half-way, and its
    # answer is still kept for the retry that is sure to come.
    return await asyncio.shield(_run_and_keep(store, begun, run))


async def _fingerprint(request: web.Request, body: BaseModel) -> str:
    operation = request.match_info.route.name or f"{request.method} {request.path}"
    params = dict(request.match_info)
    if request.content_length is not None and request.content_length > 1_000_000:
        return await asyncio.to_thread(request_fingerprint, operation, params, body)
    return request_fingerprint(operation, params, body)


async def _run_and_keep(
    store: IdempotencyStore, claim: Claimed, run: Callable[[], Awaitable[web.Response]]
) -> web.Response:
    try:
        try:
            response = await run()
        except DialerError as exc:
            response = errors.from_dialer_error(exc)
    except BaseException:
        await _release(store, claim)
        raise
    body = response.body
    if response.status >= 500 or response.status in _NOT_KEPT or not isinstance(body, bytes):
        await _release(store, claim)
    elif not await store.complete(claim, response.status, body):
        log.warning("answer too large to keep for its idempotency key", size=len(body))
    return response


async def _release(store: IdempotencyStore, claim: Claimed) -> None:
    try:
        await store.release(claim)
    except Exception:  # the claim then lapses after LOCK_SECONDS; the answer still goes out
        log.exception("could not release an idempotency key")
