"""MongoDB client (PyMongo's async API) and the indexes, created idempotently at start-up."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure

Document = dict[str, Any]
#: The server's error code for a duplicate key.
DUPLICATE_KEY = 11000
Database = AsyncDatabase[Document]
T = TypeVar("T")

INDEXES: dict[str, list[IndexModel]] = {
    "api_keys": [IndexModel([("key_hash", ASCENDING)], unique=True, name="key_hash")],
    "campaigns": [
        IndexModel([("status", ASCENDING), ("lease_until", ASCENDING)], name="status_lease"),
        IndexModel([("firm_id", ASCENDING), ("created_at", ASCENDING)], name="firm_created"),
    ],
    "calls": [
        IndexModel([("campaign_uuid", ASCENDING), ("seq", ASCENDING)], unique=True, name="seq"),
        IndexModel(
            [("campaign_uuid", ASCENDING), ("status", ASCENDING), ("seq", ASCENDING)],
            name="status_seq",
        ),
        IndexModel(
            [("campaign_uuid", ASCENDING), ("phone_number", ASCENDING), ("seq", ASCENDING)],
            name="phone_seq",
        ),
        IndexModel(
            [("campaign_uuid", ASCENDING), ("days", ASCENDING), ("seq", ASCENDING)],
            name="days_seq",
        ),
        IndexModel(
            [("campaign_uuid", ASCENDING), ("dedup_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"dedup_key": {"$exists": True}},
            name="dedup",
        ),
        # Not partial: the embedded development server plans only full indexes for ranges.
        IndexModel(
            [("campaign_uuid", ASCENDING), ("retry_at", ASCENDING)], name="campaign_retry_at"
        ),
    ],
    "outbox": [IndexModel([("created_at", ASCENDING)], name="created_at")],
    "call_pages": [
        IndexModel([("campaign_uuid", ASCENDING), ("block", ASCENDING)], name="campaign_block")
    ],
    # TTL: expired idempotency keys go (reads check expires_at too; see storage/idempotency).
    "idempotency_keys": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl")
    ],
}


def make_client(url: str, app_name: str) -> AsyncMongoClient[Document]:
    """Create a client (does not connect until first use)."""
    return AsyncMongoClient(url, tz_aware=True, tzinfo=UTC, appname=app_name)


async def ensure_indexes(db: Database) -> None:
    for collection, indexes in INDEXES.items():
        await db[collection].create_indexes(indexes)


async def ping(db: Database) -> bool:
    try:
        await db.command("ping")
    except Exception:
        return False
    return True


def is_transient(exc: BaseException) -> bool:
    """A database error that goes away by itself (server restarting, network, failover)."""
    if isinstance(exc, ConnectionFailure):
        return True
    return isinstance(exc, OperationFailure) and (
        exc.has_error_label("TransientTransactionError")
        or exc.has_error_label("RetryableWriteError")
    )


class Recheck(Exception):
    """A concurrent writer changed what the transaction read: abort it and start again."""


#: Called inside a write's transaction with what it changed, to store the messages that
#: announce the change in the same transaction (the transactional outbox).
Announce = Callable[[AsyncClientSession, Any], Awaitable[None]]

#: Called with every session before a transaction starts on it (the process's
#: :class:`shared.storage.sessions.SessionFence`, registered at start-up).
_before_transaction: Callable[[AsyncClientSession], Awaitable[None]] | None = None


def set_transaction_hook(hook: Callable[[AsyncClientSession], Awaitable[None]] | None) -> None:
    global _before_transaction
    _before_transaction = hook


async def in_transaction(
    db: Database, work: Callable[[AsyncClientSession], Awaitable[T]], attempts: int = 60
) -> T:
    """Run ``work(session)`` in a transaction, retrying write conflicts and re-checks.

    Transactions that touch the same campaign document (its ``stats``) conflict under
    load; a short randomised back-off keeps the retries from colliding again.
    """
    for attempt in range(attempts):
        last = attempt + 1 == attempts
        async with db.client.start_session() as session:
            try:
                if _before_transaction is not None:
                    await _before_transaction(session)
                async with await session.start_transaction():
                    return await work(session)
            except Recheck:
                if last:
                    raise
            except (OperationFailure, ConnectionFailure) as exc:
                transient = exc.has_error_label("TransientTransactionError") or (
                    exc.has_error_label("UnknownTransactionCommitResult")
                )
                if last or not transient:
                    raise
        await asyncio.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** min(attempt, 6))))
    raise AssertionError("unreachable")
