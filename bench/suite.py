"""`make bench`: ingest, dispatch throughput, concurrency held, slot refill latency,
queries and cost per call, each beside a baseline measured in the same run."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import baselines
from bench.client import Api, records, stored_calls, wait_final
from bench.procstat import listener_pid
from bench.report import Report, Row, percentile
from bench.stack import Stack, running

#: Firm limit high enough for every benchmark's `speed`; no per-key request rate limit
#: (the query benchmark sends requests back to back: it measures latency, not the limiter).
FIRM = {"DEFAULT_FIRM_MAX_SPEED": "100000", "RATE_LIMIT_PER_SECOND": "0"}
#: Zero talk time: every attempt answered at once, one attempt per call.
ZERO_TALK = {
    "SIM_RING_SECONDS": "0",
    "SIM_TALK_SECONDS": "0",
    "SIM_ANSWER_RATIO": "1",
    "SIM_BUSY_RATIO": "0",
    "SIM_FAILURE_RATIO": "0",
    "SIM_SEED": "1",
}
PROJECT = ("api", "scheduler-0", "worker-0", "worker-1")


async def ingest_and_queries(stack: Stack, report: Report, n: int, samples: int) -> None:
    """1. one create request of ``n`` records; 5. list and details latencies on it."""
    db_name = "bench_ingest"
    with running(stack):
        url = stack.start_engine(db_name, 0, 0, FIRM)
        assert url is not None
        api = Api(url, stack.create_key(db_name))
        try:
            recs = records(0, n)
            before = stack.snapshot()
            campaign, elapsed = await api.create(recs, speed=10, start=datetime.now(UTC))
            after = stack.snapshot()
            docs = stored_calls("baseline", recs, datetime.now(UTC))
            del recs
            base = await baselines.insert_many(stack.mongo_url, db_name, docs)
            del docs
            report.add(
                Row(
                    "1 ingest",
                    f"create of {n:,} records",
                    n / elapsed,
                    "records/s",
                    base,
                    "bare insert_many (same indexes)",
                )
            )
            report.details["ingest"] = {
                "records": n,
                "request_seconds": elapsed,
                "api_cpu_seconds": after.cpu_delta(before, ["api"]),
                "db_server_cpu_seconds": after.cpu_delta(before, ["db-server"]),
                "db_round_trips": after.count_delta(before, "db_commands"),
                "baseline_records_per_second": base,
            }
            await _queries(stack, report, api, campaign["uuid"], n, samples)
        finally:
            await api.close()


async def _queries(
    stack: Stack, report: Report, api: Api, campaign_uuid: str, n: int, samples: int
) -> None:
    client = stack.client()
    calls = client["bench_ingest"]["calls"]
    c = campaign_uuid
    per = 20
    last = (n + per - 1) // per
    middle = last // 2
    first = (await api.get(f"/api/v1/call-campaign/{c}/calls?page=1&per_page=1"))["items"][0]
    day = first["next_attempt_at"][:10]
    base_path = f"/api/v1/call-campaign/{c}"

    def page(p: int) -> Any:
        bounds = {"$gte": (p - 1) * per, "$lt": p * per}
        return lambda: calls.find({"campaign_uuid": c, "seq": bounds}).to_list()

    def where(**q: Any) -> Any:
        return lambda: calls.find({"campaign_uuid": c, **q}).sort("seq", 1).limit(per).to_list()

    kinds: list[tuple[str, str, Any]] = [
        ("list, first page", f"{base_path}/calls?page=1&per_page={per}", page(1)),
        ("list, middle page", f"{base_path}/calls?page={middle}&per_page={per}", page(middle)),
        ("list, last page", f"{base_path}/calls?page={last}&per_page={per}", page(last)),
        ("details, no filter", f"{base_path}?page=1&per_page={per}", page(1)),
        ("details, status=PENDING", f"{base_path}?status=PENDING", where(status="PENDING")),
        ("details, status=COMPLETED", f"{base_path}?status=COMPLETED", where(status="COMPLETED")),
        (
            "details, call_uuid",
            f"{base_path}?call_uuid={first['uuid']}",
            lambda: calls.find_one({"_id": first["uuid"]}),
        ),
        (
            "details, phone_number",
            f"{base_path}?phone_number={first['phone_number'].replace('+', '%2B')}",
            where(phone_number=first["phone_number"]),
        ),
        ("details, date", f"{base_path}?date={day}", where(days=day)),
    ]
    out: dict[str, Any] = {}
    try:
        for name, path, bare in kinds:
            began = time.perf_counter()
            got = await baselines.timed(lambda path=path: api.get(path), samples)
            base = await baselines.timed(bare, samples)
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                report.add(
                    Row(
                        "5 queries",
                        f"{name} {label}",
                        percentile(got, q),
                        "ms",
                        percentile(base, q),
                        "page read by the driver, no count",
                        better="lower",
                    )
                )
            out[name] = {"api_ms": got, "driver_ms": base, "wall": time.perf_counter() - began}
            print(f"    {name}: {len(got)} samples", flush=True)
    finally:
        await client.close()
    report.details["queries"] = {"campaign_calls": n, "samples": samples, "per_page": per} | {
        k: {
            "samples": len(v["api_ms"]),
            "api_p50": percentile(v["api_ms"], 0.5),
            "api_p99": percentile(v["api_ms"], 0.99),
        }
        for k, v in out.items()
    }


async def dispatch_and_cost(stack: Stack, report: Report, n: int, speed: int) -> None:
    """2. completed attempts per second end to end; 6. cost per call."""
    db_name = "bench_dispatch"
    env = {**FIRM, **ZERO_TALK, "WORKER_CONCURRENCY": str(max(100, speed // 2))}
    client = stack.client()
    with running(stack):
        url = stack.start_engine(db_name, 1, 2, env)
        assert url is not None
        api = Api(url, stack.create_key(db_name))
        try:
            campaign, _ = await api.create(records(0, n), speed=speed, start=datetime.now(UTC))
            before = stack.snapshot(fresh_counters=False)
            began = time.perf_counter()
            doc = await wait_final(client[db_name], campaign["uuid"], within=1800)
            elapsed = time.perf_counter() - began
            after = stack.snapshot()
            attempts = await client[db_name]["sim_dials"].estimated_document_count()
        finally:
            await api.close()
    base = await baselines.pipeline(
        stack.mongo_url,
        stack.amqp_url,
        db_name,
        f"{stack.prefix}.baseline",
        n,
        stack.mongo_pid(),
        listener_pid(stack.rabbit_port),
    )
    await client.close()
    rate = attempts / elapsed
    report.add(
        Row(
            "2 dispatch",
            f"{n:,} calls, zero talk, speed {speed}, 1 scheduler + 2 workers",
            rate,
            "attempts/s",
            base.per_second,
            "publish + consume + batched write",
        )
    )
    per_k = 1000 / attempts
    cpu = after.cpu_delta(before, list(PROJECT)) * per_k
    db_cpu = after.cpu_delta(before, ["db-server"]) * per_k
    mq_cpu = after.cpu_delta(before, ["rabbitmq"]) * per_k
    trips = after.count_delta(before, "db_commands") / attempts
    messages = (
        after.count_delta(before, "amqp_published") + after.count_delta(before, "amqp_delivered")
    ) / attempts
    cost = [
        ("CPU of Dialer's processes per 1,000 attempts", cpu, "s", base.cpu_per_1000),
        ("CPU of the DB server per 1,000 attempts", db_cpu, "s", base.db_cpu_per_1000),
        ("CPU of RabbitMQ per 1,000 attempts", mq_cpu, "s", base.broker_cpu_per_1000),
        ("DB round trips per attempt", trips, "", base.round_trips_per_message),
        ("broker messages per attempt (published + delivered)", messages, "", 2.0),
    ]
    for figure, value, unit, baseline in cost:
        report.add(Row("6 cost", figure, value, unit, baseline, "baseline pipeline", "lower"))
    commands: dict[str, float] = {}
    for name, counts in after.counters.items():
        for key, value in counts.items():
            if key.startswith("db."):
                delta = value - before.counters.get(name, {}).get(key, 0)
                commands[f"{name} {key[3:]}"] = round(delta / attempts, 4)
    report.details["dispatch"] = {
        "calls": n,
        "attempts": attempts,
        "seconds": elapsed,
        "final_stats": doc.get("stats"),
        "cpu_seconds": {k: after.cpu.get(k, 0) - before.cpu.get(k, 0) for k in after.cpu},
        "db_commands_per_attempt": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
        "amqp_per_attempt": {
            key: after.count_delta(before, key) / attempts
            for key in ("amqp_published", "amqp_delivered")
        },
        "baseline": vars(base),
    }


async def concurrency_and_refill(
    stack: Stack, report: Report, speed: int, n: int, rate: float, samples: int
) -> None:
    """3. utilisation and peak at `speed`; 4. slot refill latency."""
    db_name = "bench_concurrency"
    origin = datetime.now(UTC)
    env = {
        **FIRM,
        "CLOCK_RATE": str(rate),
        "CLOCK_ORIGIN": origin.isoformat(),
        "SIM_RING_SECONDS": "8",
        "SIM_TALK_SECONDS": "60",
        "SIM_ANSWER_RATIO": "0.7",
        "SIM_BUSY_RATIO": "0.2",
        "SIM_FAILURE_RATIO": "0",
        "SIM_SEED": "3",
        "WORKER_CONCURRENCY": str(speed),
        "ATTEMPT_LEASE_SECONDS": "36000",
    }
    client = stack.client()
    with running(stack):
        url = stack.start_engine(db_name, 1, 2, env)
        assert url is not None
        api = Api(url, stack.create_key(db_name))
        try:
            start = origin - timedelta(minutes=1)
            campaign, _ = await api.create(records(0, n), speed=speed, start=start, hours=48)
            await wait_final(client[db_name], campaign["uuid"], within=1800)
        finally:
            await api.close()
        dials = (
            await client[db_name]["sim_dials"]
            .find({"campaign_uuid": campaign["uuid"]}, {"started_at": 1, "ended_at": 1})
            .to_list()
        )
    p50, p99 = await baselines.ping_pong(
        stack.mongo_url, stack.amqp_url, db_name, stack.prefix, samples
    )
    await client.close()
    occ = occupancy([(d["started_at"], d["ended_at"]) for d in dials], speed)
    refill = [s / rate * 1000 for s in refill_seconds(dials, speed)]
    report.add(
        Row(
            "3 concurrency",
            f"max in progress (speed {speed})",
            occ["peak"],
            "calls",
            float(speed),
            "speed",
            "equal",
        )
    )
    report.add(
        Row(
            "3 concurrency",
            "utilisation while calls are due (mean in progress)",
            100 * occ["mean"] / speed,
            "%",
            100.0,
            "speed held all the time",
        )
    )
    report.add(
        Row(
            "3 concurrency",
            "share of time at exactly speed while calls are due",
            100 * occ["at_speed"],
            "%",
            100.0,
            "speed held all the time",
        )
    )
    for q, label, base in ((0.5, "p50", p50), (0.99, "p99", p99)):
        report.add(
            Row(
                "4 refill",
                f"slot refill latency {label}",
                percentile(refill, q),
                "ms",
                base,
                "publish→consume→write→publish→consume",
                "lower",
            )
        )
    report.details["concurrency"] = {
        "calls": n,
        "speed": speed,
        "clock_rate": rate,
        "attempts": len(dials),
        "ramp_up_wall_seconds": occ["ramp"] / rate,
        "due_wall_seconds": occ["due"] / rate,
        "refills": len(refill),
        "baseline_ping_pong_ms": {"p50": p50, "p99": p99},
    }


def occupancy(intervals: list[tuple[datetime, datetime]], speed: int) -> dict[str, float]:
    """Over [first start, last start] (calls are due): the time-weighted mean of calls in
    progress, the share of time at exactly ``speed``, the peak, and the ramp-up time."""
    points = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1])
    )
    first = min(s for s, _ in intervals)
    last = max(s for s, _ in intervals)
    level = peak = 0
    area = at_speed = 0.0
    ramp: float | None = None
    prev = first
    for t, delta in points:
        if t > last:
            break
        span = (t - prev).total_seconds()
        area += level * span
        if level == speed:
            at_speed += span
        prev = t
        level += delta
        peak = max(peak, level)
        if ramp is None and level >= speed:
            ramp = (t - first).total_seconds()
    due = (last - first).total_seconds() or 1.0
    peak = max(peak, _peak(points))
    return {
        "mean": area / due,
        "at_speed": at_speed / due,
        "peak": float(peak),
        "ramp": ramp or 0.0,
        "due": due,
    }


def _peak(points: list[tuple[datetime, int]]) -> int:
    level = peak = 0
    for _, delta in points:
        level += delta
        peak = max(peak, level)
    return peak


def refill_seconds(dials: list[dict[str, Any]], speed: int) -> list[float]:
    """Campaign seconds from each call's end to the start of the call that took its slot:
    the k-th end (in time order) pairs with the (speed + k)-th start."""
    starts = sorted(d["started_at"] for d in dials)
    ends = sorted(d["ended_at"] for d in dials)
    return [
        (starts[speed + k] - ends[k]).total_seconds() for k in range(max(0, len(starts) - speed))
    ]
