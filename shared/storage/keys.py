"""API keys, stored hashed: the clear key is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from shared.storage.mongo import Database, Document


def hash_key(clear: str) -> str:
    return hashlib.sha256(clear.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    firm_id: str
    active: bool
    created_at: datetime

    @classmethod
    def from_doc(cls, doc: Document) -> ApiKey:
        return cls(doc["_id"], doc["firm_id"], doc["active"], doc["created_at"])


class ApiKeyRepository:
    def __init__(self, db: Database) -> None:
        self.col = db["api_keys"]

    async def create(self, firm_id: str, now: datetime) -> tuple[ApiKey, str]:
        """Create a key for ``firm_id``; return it with the clear key (never stored)."""
        key_id = "key_" + secrets.token_hex(6)
        clear = "dk_" + secrets.token_urlsafe(32)
        doc = {
            "_id": key_id,
            "key_hash": hash_key(clear),
            "firm_id": firm_id,
            "active": True,
            "created_at": now,
            "deactivated_at": None,
        }
        await self.col.insert_one(doc)
        return ApiKey.from_doc(doc), clear

    async def find_by_clear(self, clear: str) -> ApiKey | None:
        doc = await self.col.find_one({"key_hash": hash_key(clear)})
        return ApiKey.from_doc(doc) if doc else None

    async def list(self) -> list[ApiKey]:
        return [ApiKey.from_doc(d) async for d in self.col.find({}).sort("created_at", 1)]

    async def deactivate(self, key_id: str, now: datetime) -> bool:
        res = await self.col.update_one(
            {"_id": key_id}, {"$set": {"active": False, "deactivated_at": now}}
        )
        return res.matched_count == 1
