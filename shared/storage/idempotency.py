"""Idempotency keys: the first answer to a request, replayed to its retries.

One document per (firm, key) in the collection ``idempotency_keys``:

- ``fingerprint``: SHA-256 of the request (operation and canonical body), so the same
  key with another request is recognised;
- ``state``: ``running`` while the first request runs (its ``token`` owns the document
  until ``locked_until``), then ``done`` with the answer (``status``, zlib-compressed
  ``body``);
- ``expires_at``: when the key may be used again. A TTL index removes expired documents
  eventually (its index is in ``shared.storage.mongo.INDEXES``; MongoDB's monitor runs every
60 s, some compatible servers never do), and
  every read treats an expired document as absent, so expiry is exact either way.

A claim whose request never finished (its process died) is abandoned once
``locked_until`` passes, and the next request with the key runs instead.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bson import Binary
from pymongo.errors import DuplicateKeyError

from shared.storage.mongo import Database, Document

COLLECTION = "idempotency_keys"
#: How long a running first request holds its key against duplicates (wall seconds): longer
#: than any request takes, so a slow create is never run twice.
LOCK_SECONDS = 600.0
#: Answers larger than this (compressed) are not kept: the key is released instead.
MAX_STORED_BYTES = 12 * 1024 * 1024


def fingerprint(*parts: str | bytes) -> str:
    """SHA-256 of the parts, each length-prefixed so that no two part lists collide."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Claimed:
    """The caller runs the request, then calls ``complete`` or ``release``."""

    doc_id: Document
    token: str


@dataclass(frozen=True)
class Replay:
    """The key's first request has finished: answer this again."""

    status: int
    body: bytes


@dataclass(frozen=True)
class InProgress:
    """The key's first request is still running."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used with a different request."""


Begin = Claimed | Replay | InProgress | Mismatch


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IdempotencyStore:
    """Claims, completes and replays idempotency keys scoped per firm."""

    def __init__(
        self,
        db: Database,
        ttl_seconds: float,
        *,
        lock_seconds: float = LOCK_SECONDS,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.col = db[COLLECTION]
        self.ttl = timedelta(seconds=ttl_seconds)
        self.lock = timedelta(seconds=lock_seconds)
        self.now = now

    async def begin(self, firm_id: str, key: str, request_fingerprint: str) -> Begin:
        """Claim ``key`` for this request, or say why it cannot run now."""
        doc_id: Document = {"firm_id": firm_id, "key": key}
        for _ in range(5):
            now = self.now()
            token = secrets.token_hex(16)
            doc: Document = {
                "_id": doc_id,
                "fingerprint": request_fingerprint,
                "state": "running",
                "token": token,
                "locked_until": now + self.lock,
                "created_at": now,
                "expires_at": now + self.ttl,
            }
            try:
                await self.col.insert_one(doc)
                return Claimed(doc_id, token)
            except DuplicateKeyError:
                pass
            found = await self.col.find_one({"_id": doc_id})
            if found is None:
                continue  # removed by the TTL monitor meanwhile: insert again
            abandoned = found["state"] == "running" and found["locked_until"] <= now
            if found["expires_at"] <= now or abandoned:
                # Take it over only if nobody else did since it was read (same token).
                res = await self.col.replace_one({"_id": doc_id, "token": found["token"]}, doc)
                if res.modified_count == 1:
                    return Claimed(doc_id, token)
                continue
            if found["fingerprint"] != request_fingerprint:
                return Mismatch()
            if found["state"] == "done":
                return Replay(found["status"], zlib.decompress(found["body"]))
            return InProgress()
        return InProgress()  # contended by as many concurrent take-overs: the client retries

    async def complete(self, claim: Claimed, status: int, body: bytes) -> bool:
        """Keep the answer for the key's retries; False if it was too large to keep."""
        packed = zlib.compress(body, 6)
        if len(packed) > MAX_STORED_BYTES:
            await self.release(claim)
            return False
        await self.col.update_one(
            {"_id": claim.doc_id, "token": claim.token},
            {
                "$set": {
                    "state": "done",
                    "status": status,
                    "body": Binary(packed),
                    "locked_until": None,
                }
            },
        )
        return True

    async def release(self, claim: Claimed) -> None:
        """Forget the claim: the next request with the key runs as if it were the first."""
        await self.col.delete_one({"_id": claim.doc_id, "token": claim.token})
