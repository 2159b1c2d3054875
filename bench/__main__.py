"""`python -m bench [suite|scale] ...`: see BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import scale, suite
from bench.profile import render
from bench.report import Report
from bench.stack import ROOT, Stack

BENCHES = ("ingest", "dispatch", "concurrency")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile",
        action="store_true",
        help="run every process (the DB server too) under py-spy and print where CPU went",
    )
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("suite", parents=[common], help="the benchmark suite (`make bench`)")
    s.add_argument("--only", nargs="*", choices=BENCHES, default=list(BENCHES))
    s.add_argument("--ingest-records", type=int, default=100_000)
    s.add_argument("--query-samples", type=int, default=40)
    s.add_argument("--dispatch-calls", type=int, default=20_000)
    s.add_argument("--dispatch-speed", type=int, default=1000)
    s.add_argument("--concurrency-speed", type=int, default=1000)
    s.add_argument("--concurrency-calls", type=int, default=4000)
    s.add_argument(
        "--concurrency-clock-rate",
        type=float,
        default=2.0,
        help="campaign seconds per wall second: at 2 an answered call (8 s ringing, 60 s "
        "talking) lasts 34 s, the mean call 25 s, so speed 1000 needs 40 new calls a second",
    )
    s.add_argument("--refill-baseline-samples", type=int, default=200)
    c = sub.add_parser(
        "scale", parents=[common], help="one campaign of a million calls (`make bench-scale`)"
    )
    c.add_argument("--calls", type=int, default=1_000_000)
    c.add_argument("--batch", type=int, default=50_000, help="records per append request")
    c.add_argument("--speed", type=int, default=1000)
    c.add_argument(
        "--dial-seconds",
        type=float,
        default=900,
        help="stop dialing after this many wall seconds if the campaign is not done",
    )
    c.add_argument("--sample-seconds", type=float, default=15)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["suite"])
    kind = "bench-scale" if args.command == "scale" else "bench"
    rundir = ROOT / ".var" / "bench" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    stack = Stack(rundir, profile=args.profile)
    began = time.monotonic()
    stack.start_servers()
    try:
        report = Report(kind, asyncio.run(stack.versions()))
        env = report.environment
        print(
            f"{kind}: {env['cores']} cores, {env['rabbitmq']}, {env['db_server']}, "
            f"commit {env['git_commit'][:10]}{' (dirty tree)' if env['git_dirty'] else ''}",
            flush=True,
        )
        if args.command == "scale":
            asyncio.run(scale.run(stack, report, args))
        else:
            asyncio.run(_suite(stack, report, args))
    finally:
        stack.stop_servers()
    report.environment["wall_seconds"] = round(time.monotonic() - began, 1)
    report.environment["logs"] = str(rundir)
    if args.profile:
        text = render(rundir)
        report.details["profile"] = text
        print(text)
    print()
    print(report.table())
    path = report.write()
    print(f"\nwritten to {path.relative_to(ROOT)} (logs in {Path(rundir).relative_to(ROOT)})")
    return 0


async def _suite(stack: Stack, report: Report, args: argparse.Namespace) -> None:
    if "ingest" in args.only:
        print(f"[1/5] ingest of {args.ingest_records:,} records, then queries", flush=True)
        await suite.ingest_and_queries(stack, report, args.ingest_records, args.query_samples)
    if "dispatch" in args.only:
        print(f"[2,6] dispatch of {args.dispatch_calls:,} zero-talk calls, cost", flush=True)
        await suite.dispatch_and_cost(stack, report, args.dispatch_calls, args.dispatch_speed)
    if "concurrency" in args.only:
        print(f"[3,4] speed {args.concurrency_speed} held, slot refill", flush=True)
        await suite.concurrency_and_refill(
            stack,
            report,
            args.concurrency_speed,
            args.concurrency_calls,
            args.concurrency_clock_rate,
            args.refill_baseline_samples,
        )


if __name__ == "__main__":
    sys.exit(main())
