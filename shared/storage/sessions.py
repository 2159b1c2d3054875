"""Transaction fencing: a process that dies inside a transaction must not stall the others.

The database server keeps a dead client's transaction open until its lifetime limit
(``transactionLifetimeLimitSeconds``, 60 s on MongoDB and on SecantusDB). Until then
every transaction that writes the same documents fails with ``WriteConflict``: a
scheduler SIGKILLed in the middle of a claim would freeze its campaign's counters for
a minute. So every process that runs transactions registers the logical session ids
(lsids) it runs them on, in the ``processes`` collection, and keeps a heartbeat there.
A live process that sees another's heartbeat older than ``dead_after`` sends
``killSessions`` for that process's lsids, which aborts its open transactions at once,
and removes its document.

A process wrongly taken for dead (stalled longer than ``dead_after``) only loses its
transactions in flight; they fail as transient and are retried.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.storage.mongo import Database, Document, set_transaction_hook

log = structlog.get_logger(__name__)


class SessionFence:
    def __init__(self, db: Database, process_id: str, role: str) -> None:
        self.db = db
        self.col = db["processes"]
        self.process_id = process_id
        self.role = role
        self.lsids: dict[bytes, Any] = {}  # uuid bytes -> the BSON value of the lsid
        self._task: asyncio.Task[None] | None = None

    async def start(self, dead_after: timedelta) -> None:
        """Register every transaction's session from now on; heartbeat and reap."""
        set_transaction_hook(self.register)
        await self.beat()
        self._task = asyncio.create_task(self.run(dead_after))

    async def stop(self) -> None:
        """After the process's last transaction: stop beating and forget this process."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        set_transaction_hook(None)
        await self.leave()

    async def register(self, session: AsyncClientSession) -> None:
        """Record ``session``'s lsid before a transaction runs on it (once per lsid)."""
        lsid = session.session_id["id"]
        key = bytes(lsid)
        if key in self.lsids:
            return
        self.lsids[key] = lsid
        await self.beat()

    async def beat(self) -> None:
        await self.col.update_one(
            {"_id": self.process_id},
            {
                "$set": {"seen": datetime.now(UTC), "role": self.role},
                "$addToSet": {"lsids": {"$each": list(self.lsids.values())}},
            },
            upsert=True,
        )

    async def reap(self, dead_after: timedelta) -> int:
        """Abort the transactions of processes whose heartbeat stopped; return how many."""
        cutoff = datetime.now(UTC) - dead_after
        dead: list[Document] = [
            d
            async for d in self.col.find(
                {"seen": {"$gte": datetime(1970, 1, 1, tzinfo=UTC), "$lt": cutoff}}
            )
        ]
        for doc in dead:
            lsids = doc.get("lsids") or []
            if lsids:
                await self.db.client.admin.command("killSessions", [{"id": x} for x in lsids])
            await self.col.delete_one({"_id": doc["_id"], "seen": doc["seen"]})
            log.warning(
                "process presumed dead: its open transactions were aborted",
                process=doc["_id"],
                role=doc.get("role"),
                sessions=len(lsids),
            )
        return len(dead)

    async def leave(self) -> None:
        """On a clean stop: nothing of ours is left open, forget us."""
        await self.col.delete_one({"_id": self.process_id})

    async def run(self, dead_after: timedelta) -> None:
        """Heartbeat and reap, three times per ``dead_after``."""
        while True:
            try:
                await self.beat()
                await self.reap(dead_after)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session fence round failed", error=repr(exc))
            await asyncio.sleep(dead_after.total_seconds() / 3)
