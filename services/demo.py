"""`dialer demo`: a campaign of a few thousand numbers against a running stack, live.

It creates the campaign through the public API (with a calling window from 2000 to
2100, so it runs whatever the stack's clock says), then polls the details endpoint and
draws a progress bar with the count of calls per status, ending with a summary.
Start the stack on accelerated time for a quick run: `dialer stack --clock-rate 60`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from services.stack import VAR

#: Open whatever campaign time the stack runs on (it may be accelerated or shifted).
WINDOW = ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
FINAL = ("COMPLETED", "NO_ANSWER", "BUSY", "FAILED", "CANCELED", "EXPIRED")
ORDER = ("PENDING", "IN_PROGRESS", *FINAL)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8080", help="API base address")
    p.add_argument("--key", help="API key (default: the development key in .var/dev-key.json)")
    p.add_argument("--calls", type=int, default=3000, help="numbers in the campaign (3000)")
    p.add_argument("--speed", type=int, default=50, help="calls in progress at once (50)")
    p.add_argument("--retry", type=int, default=2, help="retries of unanswered calls (2)")
    p.add_argument("--retry-interval", type=int, default=30, help="minutes between attempts")


def _key(args: argparse.Namespace) -> str:
    if args.key:
        return str(args.key)
    keyfile = Path(VAR) / "dev-key.json"
    if not keyfile.exists():
        raise SystemExit("no --key and no .var/dev-key.json: start the stack with `make run`")
    return str(json.loads(keyfile.read_text())["key"])


def _numbers(n: int) -> list[str]:
    # Valid North-American numbers; none ends in a magic suffix (0001-0007), so the
    # simulated provider's configured mix decides each outcome.
    return [f"+1212{200 + i // 9000:03d}{1000 + i % 9000:04d}" for i in range(n)]


def _body(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "call_campaign_name": f"demo {now:%Y-%m-%d %H:%M:%S}",
        "start_at": WINDOW[0],
        "end_at": WINDOW[1],
        "retry": args.retry,
        "speed": args.speed,
        "retry_interval": args.retry_interval,
        "call_records": [
            {
                "phone_number": p,
                "language": "EN",
                "gender_voice": "female",
                "agent_name": "demo_agent",
                "variables": {"n": i},
            }
            for i, p in enumerate(_numbers(args.calls))
        ],
    }


def _line(stats: dict[str, int], width: int = 40) -> str:
    total = max(1, stats.get("total", 0))
    done = sum(stats.get(s, 0) for s in FINAL)
    filled = int(width * done / total)
    counts = " ".join(f"{s}={stats.get(s, 0)}" for s in ORDER)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {counts}"


async def _demo(args: argparse.Namespace) -> int:
    headers = {"x-cybernet-api-key": _key(args)}
    base = args.url.rstrip("/") + "/api/v1/call-campaign"
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(base, json=_body(args)) as r:
            created = await r.json()
            if r.status != 201:
                print(f"create failed ({r.status}): {created}", file=sys.stderr)
                return 1
        uuid = created["uuid"]
        print(f"campaign {uuid}: {created['call_records_added']} calls, speed {args.speed}")
        print(
            "(calls ring and talk in campaign time: on a stack started without CLOCK_RATE each "
            "takes a minute or so; `make run CLOCK_RATE=60` runs a campaign minute per second)"
        )
        tty = sys.stdout.isatty()
        status, stats = created["status"], created["stats"]
        while status not in ("COMPLETED", "FAILED", "CANCELED"):
            await asyncio.sleep(0.5)
            async with http.get(f"{base}/{uuid}?per_page=1") as r:
                details = await r.json()
            status, stats = details["campaign"]["status"], details["campaign"]["stats"]
            print(("\r" if tty else "") + _line(stats), end="" if tty else "\n", flush=True)
        elapsed = time.monotonic() - started
    print(f"\ncampaign {status} in {elapsed:.1f} s")
    for s in FINAL:
        print(f"  {s:<10} {stats.get(s, 0)}")
    return 0 if status == "COMPLETED" else 1


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))
