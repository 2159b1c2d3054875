"""Prometheus metrics of API, scheduler and worker, scraped after a campaign completes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.stack import free_port, wait_port
from shared.storage.mongo import Database
from tests.e2e.test_engine_via_api import Api, campaign_body
from tests.support.analysis import campaign, eventually
from tests.support.processes import Processes

pytestmark = pytest.mark.e2e
CALLS = 20
CREATE_ROUTE = "/api/v1/call-campaign"


async def scrape(
    session: aiohttp.ClientSession, port: int
) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def total(samples: Iterable[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for ls, v in samples if all(ls.get(k) == w for k, w in labels.items()))


async def test_metrics_of_api_scheduler_and_worker(
    processes: Processes, mongo_db: Database
) -> None:
    api_port, scheduler_port, worker_port = free_port(), free_port(), free_port()
    key = await asyncio.to_thread(processes.create_key)
    api_proc = processes.start("api", "api", API_PORT=str(api_port))
    scheduler = processes.start("scheduler-0", "scheduler", METRICS_PORT=str(scheduler_port))
    worker = processes.start("worker-0", "worker", METRICS_PORT=str(worker_port))
    for port, proc in ((api_port, api_proc), (scheduler_port, scheduler), (worker_port, worker)):
        await asyncio.to_thread(wait_port, "127.0.0.1", port, 60, proc)

    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{api_port}/api/v1", key)
        phones = [f"+1212{200 + i}0001" for i in range(CALLS)]  # all answer
        status, body = await api.call("POST", "/call-campaign", campaign_body(phones, speed=4))
        assert status == 201, body
        uuid = body["uuid"]
        await eventually(
            lambda: campaign(mongo_db, uuid),
            lambda c: c["status"] == "COMPLETED",
            120,
            "COMPLETED",
        )

        api_m = await scrape(session, api_port)
        assert total(api_m["dialer_api_requests_total"], route=CREATE_ROUTE, status="201") == 1
        assert not any(uuid in ls["route"] for ls, _ in api_m["dialer_api_requests_total"])
        assert total(api_m["dialer_api_request_seconds_count"], route=CREATE_ROUTE) == 1

        sched = await scrape(session, scheduler_port)
        assert total(sched["dialer_calls_dispatched_total"], campaign_uuid=uuid) == CALLS
        assert total(sched["dialer_calls_finished_total"], outcome="ANSWERED") == CALLS
        assert total(sched["dialer_calls_in_progress"], campaign_uuid=uuid) == 0
        assert total(sched["dialer_lease_takeovers_total"]) >= 1
        assert total(sched["dialer_result_batch_size_sum"]) == CALLS

        # Every change went out through the transactional outbox: nothing is left in it,
        # and nothing needed the relay (no crash, no broker outage).
        for port in (api_port, scheduler_port):
            m = await eventually(
                lambda p=port: scrape(session, p),  # type: ignore[misc]
                lambda m: total(m.get("dialer_outbox_backlog", [({}, -1.0)])) == 0,
                30,
                "outbox backlog reported as 0",
            )
            assert total(m["dialer_outbox_relayed_total"]) == 0
        assert await mongo_db["outbox"].count_documents({}) == 0

        work = await scrape(session, worker_port)
        assert total(work["dialer_dial_commands_total"], result="dialed") == CALLS
        assert total(work["dialer_dial_commands_total"], result="duplicate") == 0
        assert total(work["dialer_attempt_seconds_count"], outcome="ANSWERED") == CALLS
        assert total(work["dialer_dial_queue_lag_seconds_count"]) == CALLS
