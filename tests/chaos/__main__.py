"""`make chaos`: the fault-injection run (see tests/chaos/run.py). Exit 1 if a figure is wrong."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from tests.chaos.broker import available
from tests.chaos.run import Chaos, ChaosConfig


def main(argv: list[str] | None = None) -> int:
    d = ChaosConfig()
    p = argparse.ArgumentParser(
        prog="make chaos",
        description="Dial a campaign on accelerated time while SIGKILLing schedulers and "
        "dialer workers and restarting RabbitMQ and the database server; then print one "
        "line per figure (calls lost, attempts dialed twice, instants above speed, calls "
        "not final, campaign not COMPLETED, events missing, stats counters off) and exit "
        "1 if any is wrong. Starts its own RabbitMQ node and SecantusDB; logs and data go "
        "to .var/chaos/<run>/.",
    )
    p.add_argument("--calls", type=int, default=d.calls, help=f"calls in the campaign ({d.calls})")
    p.add_argument(
        "--schedulers", type=int, default=d.schedulers, help=f"scheduler processes ({d.schedulers})"
    )
    p.add_argument("--workers", type=int, default=d.workers, help=f"dialer workers ({d.workers})")
    p.add_argument("--speed", type=int, default=d.speed, help=f"campaign speed ({d.speed})")
    p.add_argument("--retry", type=int, default=d.retry, help=f"campaign retry ({d.retry})")
    p.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        help=f"CLOCK_RATE: campaign seconds per wall second ({d.rate:g})",
    )
    p.add_argument(
        "--kill-every",
        type=float,
        default=d.kill_every,
        help=f"wall seconds between SIGKILLs ({d.kill_every:g}; 0: none)",
    )
    p.add_argument("--max-kills", type=int, default=None, help="stop killing after N kills")
    p.add_argument("--no-broker-restart", action="store_true", help="do not restart RabbitMQ")
    p.add_argument("--no-db-restart", action="store_true", help="do not restart the database")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    p.add_argument(
        "--timeout",
        type=float,
        default=d.timeout,
        help=f"give up after this many wall seconds ({d.timeout:g})",
    )
    p.add_argument("--workdir", type=Path, default=None, help="where logs and data go")
    args = p.parse_args(argv)
    why = available()
    if why is not None:
        print(f"chaos: cannot run: {why}", file=sys.stderr)
        return 2
    config = ChaosConfig(
        calls=args.calls,
        schedulers=args.schedulers,
        workers=args.workers,
        speed=args.speed,
        retry=args.retry,
        rate=args.rate,
        kill_every=args.kill_every,
        max_kills=args.max_kills,
        restart_broker=not args.no_broker_restart,
        restart_database=not args.no_db_restart,
        seed=args.seed,
        timeout=args.timeout,
        workdir=args.workdir,
    )
    # SIGTERM stops the run like Ctrl-C: everything it started is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = asyncio.run(Chaos(config, lambda s: print(s, flush=True)).run())
    except KeyboardInterrupt:
        print("chaos: interrupted", file=sys.stderr)
        return 130
    print("--- figures")
    for line in report.lines():
        print(line)
    print("chaos: PASS" if report.ok else "chaos: FAIL")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
