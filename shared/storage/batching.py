"""Group writes: many concurrent single-document writes become one ``bulk_write``.

A dialer worker has up to ``WORKER_CONCURRENCY`` calls in flight, each writing a record
before it dials and after it ends. Sent one by one, those writes contend on the
server; grouped, a burst costs one round trip. Each caller still waits until its own
write is stored, and learns whether an insert was a duplicate ``_id``.
"""

from __future__ import annotations

import asyncio

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from shared.storage.mongo import DUPLICATE_KEY, Document

Write = InsertOne[Document] | UpdateOne


class GroupWriter:
    def __init__(self, collection: AsyncCollection[Document], max_batch: int = 500) -> None:
        self.collection = collection
        self.max_batch = max_batch
        self._pending: list[tuple[Write, asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def insert(self, doc: Document) -> bool:
        """Store ``doc``; ``False`` if a document with its ``_id`` already exists."""
        return await self._write(InsertOne(doc))

    async def update(self, filter: Document, update: Document) -> None:
        """Apply ``update`` to the one document matching ``filter``."""
        await self._write(UpdateOne(filter, update))

    async def _write(self, op: Write) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the writes of this burst join
        while self._pending:
            batch = self._pending[: self.max_batch]
            self._pending = self._pending[self.max_batch :]
            duplicates: set[int] = set()
            try:
                await self.collection.bulk_write([op for op, _ in batch], ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
                if other:
                    _fail(batch, exc)
                    continue
                duplicates = {int(e["index"]) for e in errors}
            except Exception as exc:
                _fail(batch, exc)
                continue
            for i, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(i not in duplicates)


def _fail(batch: list[tuple[Write, asyncio.Future[bool]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
