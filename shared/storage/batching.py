"""Group inserts: many concurrent single-document inserts become one ``insert_many``.

A dialer worker has up to ``WORKER_CONCURRENCY`` calls in flight, each writing a record
before it dials and after it ends. Sent one by one, those inserts contend on the
server; grouped, a burst costs one round trip. Each caller still waits until its own
document is stored, and learns whether it was a duplicate ``_id``.
"""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from shared.storage.mongo import DUPLICATE_KEY, Document


class GroupInserter:
    def __init__(self, collection: AsyncCollection[Document], max_batch: int = 500) -> None:
        self.collection = collection
        self.max_batch = max_batch
        self._pending: list[tuple[Document, asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def insert(self, doc: Document) -> bool:
        """Store ``doc``; ``False`` if a document with its ``_id`` already exists."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((doc, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the inserts of this burst join
        while self._pending:
            batch = self._pending[: self.max_batch]
            self._pending = self._pending[self.max_batch :]
            duplicates: set[int] = set()
            try:
                await self.collection.insert_many([d for d, _ in batch], ordered=False)
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


def _fail(batch: list[tuple[Document, asyncio.Future[bool]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
