"""`make bench-scale`: one campaign of a million calls, created through the append
endpoint in batches and then dialed, with the memory of every process sampled along
the way (it must not grow with the campaign's size)."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from bench import baselines
from bench.client import Api, finished, records, stored_calls
from bench.report import Report, Row
from bench.stack import Stack, running
from bench.suite import FIRM, ZERO_TALK

DB = "bench_scale"


async def run(stack: Stack, report: Report, args: argparse.Namespace) -> None:
    env = {**FIRM, **ZERO_TALK, "WORKER_CONCURRENCY": str(max(100, args.speed // 2))}
    client = stack.client()
    db = client[DB]
    samples: list[dict[str, Any]] = []
    with running(stack):
        url = stack.start_engine(DB, 0, 0, env)
        assert url is not None
        api = Api(url, stack.create_key(DB))
        try:
            base_docs = stored_calls("baseline", records(0, args.batch), datetime.now(UTC))
            base_ingest = await baselines.insert_many(stack.mongo_url, DB, base_docs)
            del base_docs
            campaign, _ = await api.create([], args.speed, datetime.now(UTC), 72, dynamic=True)
            c = campaign["uuid"]
            print(f"appending {args.calls:,} records in batches of {args.batch:,}", flush=True)
            began = time.perf_counter()
            for start in range(0, args.calls, args.batch):
                count = min(args.batch, args.calls - start)
                seconds = await api.append(c, records(start, count))
                snap = stack.snapshot(fresh_counters=False)
                samples.append(_sample("append", start + count, time.perf_counter() - began, snap))
                print(
                    f"  {start + count:>9,} records  {count / seconds:7,.0f} records/s  "
                    f"RSS api {snap.rss.get('api', 0):.0f} MiB, "
                    f"db {snap.rss.get('db-server', 0):.0f} MiB",
                    flush=True,
                )
            ingest = args.calls / (time.perf_counter() - began)
            report.add(
                Row(
                    "7 scale",
                    f"append {args.calls:,} records in batches of {args.batch:,}",
                    ingest,
                    "records/s",
                    base_ingest,
                    "bare insert_many of one batch",
                )
            )
            dialed, dial_seconds = await _dial(stack, db, c, env, args, samples)
        finally:
            await api.close()
    base = await baselines.pipeline(
        stack.mongo_url, stack.amqp_url, DB, f"{stack.prefix}.baseline", 20_000, None
    )
    await client.close()
    report.add(
        Row(
            "7 scale",
            f"dial: {dialed:,} of {args.calls:,} calls in {dial_seconds:,.0f} s",
            dialed / dial_seconds,
            "attempts/s",
            base.per_second,
            "publish + consume + batched write",
        )
    )
    _memory_rows(report, samples)
    report.details["scale"] = {
        "calls": args.calls,
        "batch": args.batch,
        "dialed": dialed,
        "dial_seconds": dial_seconds,
        "completed": dialed >= args.calls,
        "samples": samples,
    }


async def _dial(
    stack: Stack,
    db: Any,
    campaign_uuid: str,
    env: dict[str, str],
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
) -> tuple[int, float]:
    for name, role in (
        ("scheduler-0", "scheduler"),
        ("worker-0", "worker"),
        ("worker-1", "worker"),
    ):
        stack.start(name, [role], stack.base_env(DB, **env))
    stack.wait_ready()
    print(f"dialing (at most {args.dial_seconds:.0f} s)", flush=True)
    began = time.perf_counter()
    done = 0
    last_print = 0.0
    while True:
        doc = await db["campaigns"].find_one({"_id": campaign_uuid}, {"stats": 1, "status": 1})
        done = finished(doc["stats"])
        elapsed = time.perf_counter() - began
        if elapsed - last_print >= args.sample_seconds or doc["status"] == "COMPLETED":
            last_print = elapsed
            snap = stack.snapshot(fresh_counters=False)
            samples.append(_sample("dial", done, elapsed, snap))
            rss = ", ".join(f"{k} {v:.0f}" for k, v in snap.rss.items() if k != "rabbitmq")
            print(
                f"  {elapsed:6.0f} s {done:>9,} dialed  {done / max(elapsed, 1e-9):6.1f}/s  "
                f"RSS MiB: {rss}",
                flush=True,
            )
        if doc["status"] == "COMPLETED" or elapsed >= args.dial_seconds:
            return done, elapsed
        await asyncio.sleep(1.0)


def _sample(phase: str, count: int, seconds: float, snap: Any) -> dict[str, Any]:
    return {
        "phase": phase,
        "count": count,
        "seconds": round(seconds, 1),
        "rss_mib": {k: round(v, 1) for k, v in snap.rss.items()},
        "cpu_seconds": {k: round(v, 1) for k, v in snap.cpu.items()},
    }


def _memory_rows(report: Report, samples: list[dict[str, Any]]) -> None:
    """RSS at the end of each phase beside the same process early in that phase."""
    for phase, names in (
        ("append", ("api", "db-server")),
        ("dial", ("scheduler-0", "worker-0", "worker-1", "api", "db-server")),
    ):
        rows = [s for s in samples if s["phase"] == phase]
        if len(rows) < 3:
            continue
        early = rows[max(1, len(rows) // 10)]  # after warm-up
        last = rows[-1]
        for name in names:
            if name in last["rss_mib"] and name in early["rss_mib"]:
                report.add(
                    Row(
                        "7 scale",
                        f"RSS of {name}, end of {phase} ({last['count']:,} calls)",
                        last["rss_mib"][name],
                        "MiB",
                        early["rss_mib"][name],
                        f"same process at {early['count']:,}",
                        "lower",
                    )
                )
