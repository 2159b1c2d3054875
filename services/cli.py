"""The `dialer` command: one entry point for every process and operator task."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from shared.clock import clock_from, wall_now
from shared.config import ApiSettings, CommonSettings, SchedulerSettings, WorkerSettings
from shared.logging import configure_logging

ENV_NOTE = (
    "Connections and tuning come from environment variables (AMQP_URL, MONGODB_URL, "
    "MONGODB_DB, AMQP_PREFIX, CLOCK_RATE, ...): see the README's configuration table."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dialer",
        description="Dialer: an outbound call-campaign engine (API, scheduler, dialer worker).",
        epilog=ENV_NOTE,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = sub.add_parser(
        "api",
        help="serve the HTTP API",
        description="Serve the Call Campaigns HTTP API "
        "(/api/v1/...), /health and the OpenAPI document.",
        epilog=ENV_NOTE,
    )
    api.add_argument("--host", help="listen address (default: API_HOST or 127.0.0.1)")
    api.add_argument("--port", type=int, help="listen port (default: API_PORT or 8080)")

    sub.add_parser(
        "scheduler",
        help="run a scheduler process",
        description="Run a scheduler: takes leases on campaigns, dispatches due calls as dial "
        "commands within each campaign's speed and calling window, and persists results. "
        "Run any number of them.",
        epilog=ENV_NOTE,
    )
    worker = sub.add_parser(
        "worker",
        help="run a dialer worker process",
        description="Run a dialer worker: consumes dial commands, places calls through the "
        "telephony provider (TELEPHONY_PROVIDER, default: simulated) and reports results. "
        "Run any number of them.",
        epilog=ENV_NOTE,
    )
    worker.add_argument(
        "--concurrency", type=int, help="calls placed at once (default: WORKER_CONCURRENCY or 100)"
    )

    keys = sub.add_parser(
        "keys",
        help="manage API keys",
        description="Create, list and deactivate API keys. "
        "Keys are stored hashed; the clear key is printed once, at creation.",
        epilog=ENV_NOTE,
    )
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = ksub.add_parser(
        "create",
        help="create a key for a firm",
        description="Create an API key for FIRM and print its id and the "
        "clear key (shown only this once).",
        epilog=ENV_NOTE,
    )
    kc.add_argument("--firm", required=True, help="firm the key belongs to")
    kc.add_argument(
        "--json", action="store_true", help='print one JSON object {"key_id", "key", "firm"}'
    )
    kl = ksub.add_parser(
        "list",
        help="list keys (never the clear key)",
        description="List every key: id, firm, active flag, creation time.",
        epilog=ENV_NOTE,
    )
    kl.add_argument("--json", action="store_true", help="print a JSON array")
    kd = ksub.add_parser(
        "deactivate",
        help="deactivate a key",
        description="Deactivate KEY_ID: requests with it answer 403 within API_KEY_CACHE_SECONDS.",
        epilog=ENV_NOTE,
    )
    kd.add_argument("key_id", metavar="KEY_ID")

    campaigns = sub.add_parser(
        "campaigns",
        help="operator actions on campaigns",
        description="Operator actions on campaigns (any firm's).",
        epilog=ENV_NOTE,
    )
    csub = campaigns.add_subparsers(dest="campaigns_command", required=True, metavar="ACTION")
    cc = csub.add_parser(
        "cancel",
        help="cancel a campaign",
        description="Cancel a PENDING or PROCESSING campaign: it becomes CANCELED with REASON, "
        "its PENDING calls (first attempts and retries) become CANCELED, and calls in progress "
        "finish and are recorded without further attempts. Appending to it then answers 400. "
        "The campaign.status_changed event is published by the outbox relay of a running API "
        "or scheduler. Exits 1 when the campaign does not exist or is already final.",
        epilog=ENV_NOTE,
    )
    cc.add_argument("campaign_uuid", metavar="CAMPAIGN_UUID")
    cc.add_argument(
        "--reason", default="canceled by the operator", help="stored as the status_reason"
    )
    cc.add_argument("--json", action="store_true", help="print the campaign as JSON")

    stack = sub.add_parser(
        "stack",
        help="run the whole stack in the foreground (what `make run` does)",
        description="Start the embedded MongoDB-compatible server (unless MONGODB_URL is set), "
        "the API, schedulers and dialer workers; create a development API key; print the API "
        "address, the key and a ready-to-paste curl. Ctrl-C stops everything it started.",
        epilog=ENV_NOTE,
    )
    stack.add_argument("--schedulers", type=int, default=1, help="scheduler processes (1)")
    stack.add_argument("--workers", type=int, default=1, help="dialer worker processes (1)")
    stack.add_argument(
        "--port", type=int, default=None, help="API port (default: API_PORT or 8080)"
    )
    stack.add_argument(
        "--clock-rate",
        type=float,
        default=None,
        help="campaign seconds per wall second for every process (default: CLOCK_RATE or 1; "
        "60 runs a campaign minute per second)",
    )
    stack.add_argument(
        "--mongo-port",
        type=int,
        default=27017,
        help="port of the embedded MongoDB-compatible server (27017)",
    )
    demo = sub.add_parser(
        "demo",
        help="run a demo campaign against a running stack, live",
        description="Create a campaign of a few thousand numbers through the API of a running "
        "stack and show its progress live (a bar and the count of calls per status), ending "
        "with a summary. For a quick run start the stack on accelerated time: "
        "`dialer stack --clock-rate 60` (or `make run CLOCK_RATE=60`).",
    )
    from services.demo import add_arguments

    add_arguments(demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "api":
        overrides: dict[str, Any] = {}
        if args.host:
            overrides["api_host"] = args.host
        if args.port:
            overrides["api_port"] = args.port
        settings = ApiSettings(**overrides)
        configure_logging(settings.log_level, settings.log_json)
        from services.api.main import run as run_api

        return run_api(settings)
    if args.command == "scheduler":
        sched = SchedulerSettings()
        configure_logging(sched.log_level, sched.log_json)
        from services.scheduler.main import run as run_scheduler

        return run_scheduler(sched)
    if args.command == "worker":
        wsettings = WorkerSettings(
            **({"worker_concurrency": args.concurrency} if args.concurrency else {})
        )
        configure_logging(wsettings.log_level, wsettings.log_json)
        from services.dialer.main import run as run_worker

        return run_worker(wsettings)
    if args.command == "keys":
        return asyncio.run(_keys(args))
    if args.command == "campaigns":
        return asyncio.run(_campaigns(args))
    if args.command == "demo":
        from services.demo import run_demo

        return run_demo(args)
    if args.command == "stack":
        from services.stack import run_stack

        return run_stack(args)
    return 2


async def _campaigns(args: argparse.Namespace) -> int:
    from shared.domain.status import CampaignStatus
    from shared.messaging.outbox import Outbox
    from shared.service.lifecycle import end_campaign
    from shared.storage.engine import EngineStore
    from shared.storage.mongo import make_client

    settings = CommonSettings()
    client = make_client(settings.mongodb_url, "dialer-campaigns")
    try:
        db = client[settings.mongodb_db]
        store = EngineStore(db)
        # No broker here: the event waits in the outbox for a running API's or scheduler's relay.
        outbox = Outbox(db, sender=_NoSender())
        now = clock_from(settings).now()
        before = await end_campaign(
            store,
            outbox,
            args.campaign_uuid,
            CampaignStatus.CANCELED,
            args.reason,
            now,
            deliver=False,
        )
        if before is None:
            found = await store.campaign(args.campaign_uuid)
            why = "no such campaign" if found is None else f"campaign is {found['status']}"
            print(f"cannot cancel {args.campaign_uuid}: {why}", file=sys.stderr)
            return 1
        after = await store.campaign(args.campaign_uuid) or {}
        stats = after.get("stats", {})
        if args.json:
            print(
                json.dumps(
                    {
                        "uuid": args.campaign_uuid,
                        "status": after.get("status"),
                        "status_reason": after.get("status_reason"),
                        "previous_status": before["status"],
                        "stats": stats,
                    }
                )
            )
        else:
            print(
                f"canceled {args.campaign_uuid} (was {before['status']}): "
                f"{stats.get('CANCELED', 0)} calls CANCELED, "
                f"{stats.get('IN_PROGRESS', 0)} in progress finish without retries"
            )
        return 0
    finally:
        await client.close()


class _NoSender:
    async def send(self, entries: Sequence[Any]) -> None:
        raise RuntimeError("no broker connection in this command")


async def _keys(args: argparse.Namespace) -> int:
    from shared.storage.keys import ApiKeyRepository
    from shared.storage.mongo import ensure_indexes, make_client

    settings = CommonSettings()
    client = make_client(settings.mongodb_url, "dialer-keys")
    try:
        db = client[settings.mongodb_db]
        await ensure_indexes(db)
        repo = ApiKeyRepository(db)
        if args.keys_command == "create":
            key, clear = await repo.create(args.firm, wall_now())
            if args.json:
                print(json.dumps({"key_id": key.key_id, "key": clear, "firm": key.firm_id}))
            else:
                print(
                    f"key id: {key.key_id}\nfirm:   {key.firm_id}\nkey:    {clear}\n"
                    "(the key is shown only now; store it safely)"
                )
            return 0
        if args.keys_command == "list":
            keys = await repo.list()
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "key_id": k.key_id,
                                "firm": k.firm_id,
                                "active": k.active,
                                "created_at": k.created_at.isoformat(),
                            }
                            for k in keys
                        ]
                    )
                )
            else:
                print(f"{'KEY ID':<18} {'FIRM':<24} {'ACTIVE':<7} CREATED")
                for k in keys:
                    print(
                        f"{k.key_id:<18} {k.firm_id:<24} {k.active!s:<7} {k.created_at.isoformat()}"
                    )
            return 0
        if await repo.deactivate(args.key_id, wall_now()):
            print(f"deactivated {args.key_id}")
            return 0
        print(f"no such key: {args.key_id}", file=sys.stderr)
        return 1
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(main())
