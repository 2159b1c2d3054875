"""In-process counters for a benchmarked `dialer` process, with no change to its code.

`python -m bench.probe scheduler` is `dialer scheduler` with two counters installed
before anything connects:

- database round trips: a PyMongo ``CommandListener`` registered globally, so every
  client the process creates reports each command it sends (one command, one round trip);
- broker messages: aiormq's ``basic_publish`` and delivery handler, wrapped to count
  messages published and delivered.

The counts are written as JSON to ``$BENCH_PROBE_FILE`` every half second (and at exit),
where the benchmark reads them before and after a measurement.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

from pymongo import monitoring

#: Commands a driver sends on its own (handshakes, session clean-up), not the code's work.
DRIVER_CHATTER = frozenset({"hello", "ismaster", "isMaster", "endSessions", "ping"})

counts: Counter[str] = Counter()


class _Commands(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in DRIVER_CHATTER:
            counts["db_commands"] += 1
            counts[f"db.{event.command_name}"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        counts["db_failed"] += 1


def _wrap_amqp() -> None:
    from aiormq.channel import Channel

    publish = Channel.basic_publish
    deliver = Channel._on_deliver_frame

    async def basic_publish(self: Channel, *args: Any, **kwargs: Any) -> Any:
        counts["amqp_published"] += 1
        return await publish(self, *args, **kwargs)

    async def on_deliver(self: Channel, frame: Any) -> None:
        counts["amqp_delivered"] += 1
        await deliver(self, frame)

    Channel.basic_publish = basic_publish  # type: ignore[method-assign]
    Channel._on_deliver_frame = on_deliver  # type: ignore[method-assign]


def snapshot() -> dict[str, int]:
    for _ in range(5):
        try:
            return dict(counts)
        except RuntimeError:  # changed size while copied by another thread
            time.sleep(0.001)
    return {}


def _write(path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(snapshot(), f)
    os.replace(tmp, path)


def install(path: str | None) -> None:
    monitoring.register(_Commands())
    _wrap_amqp()
    if not path:
        return

    def loop() -> None:
        while True:
            time.sleep(0.5)
            _write(path)

    threading.Thread(target=loop, name="bench-probe", daemon=True).start()
    atexit.register(_write, path)


def main() -> int:
    install(os.environ.get("BENCH_PROBE_FILE"))
    from services.cli import main as dialer

    return dialer(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
