"""`dialer stack`: the whole stack in the foreground, for development (`make run`).

Also home of :class:`EmbeddedMongo`, the launcher of the embedded MongoDB-compatible
server (SecantusDB, development and CI only), which the tests use too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / ".var"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class EmbeddedMongo:
    """SecantusDB (`secantusd-py`) as its own process on 127.0.0.1."""

    def __init__(self, port: int, storage: str, log_file: IO[bytes] | int = subprocess.DEVNULL):
        self.port = port
        self.storage = storage
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 60.0) -> None:
        exe = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
        self.proc = subprocess.Popen(
            [
                exe,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                self.storage,
                "--log-level",
                "WARNING",
            ],
            stdout=self.log_file,
            stderr=self.log_file,
            start_new_session=True,
        )
        wait_port("127.0.0.1", self.port, timeout, self.proc)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _dev_key(env: dict[str, str]) -> str:
    """Reuse the development key kept in .var/dev-key.json, or create one."""
    keyfile = VAR / "dev-key.json"
    dialer = str(Path(sys.executable).parent / "dialer")
    if keyfile.exists():
        saved = json.loads(keyfile.read_text())
        listed = subprocess.run(
            [dialer, "keys", "list", "--json"], env=env, check=True, capture_output=True, text=True
        )
        if any(k["key_id"] == saved["key_id"] and k["active"] for k in json.loads(listed.stdout)):
            return str(saved["key"])
    out = subprocess.run(
        [dialer, "keys", "create", "--firm", "dev", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    keyfile.write_text(out.stdout)
    keyfile.chmod(0o600)
    return str(json.loads(out.stdout)["key"])


CURL = """curl -s -X POST http://{host}:{port}/api/v1/call-campaign \\
  -H 'content-type: application/json' -H 'x-cybernet-api-key: {key}' \\
  -d '{{"call_campaign_name": "Demo", "start_at": "{start}", "end_at": "{end}",
       "retry": 1, "speed": 3, "retry_interval": 30,
       "call_records": [{{"phone_number": "77012345678", "language": "RU",
                         "gender_voice": "male", "agent_name": "sales_agent_v2",
                         "variables": {{"client_name": "John Doe"}}}}]}}'"""


def run_stack(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    VAR.mkdir(exist_ok=True)
    env = dict(os.environ)
    if args.clock_rate is not None:
        env["CLOCK_RATE"] = str(args.clock_rate)
    if float(env.get("CLOCK_RATE", "1")) != 1 and not env.get("CLOCK_ORIGIN"):
        # Every process must share the origin of accelerated time.
        env["CLOCK_ORIGIN"] = datetime.now(UTC).isoformat()
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    mongo: EmbeddedMongo | None = None
    logs = open(VAR / "secantus.log", "ab")  # noqa: SIM115 - open for the stack's lifetime
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        port = args.port or int(env.get("API_PORT", "8080"))
        env["API_PORT"] = str(port)
        host = env.get("API_HOST", "127.0.0.1")
        if _port_open(port, host):
            print(
                f"[stack] {host}:{port} is taken: is a stack already running? Use it, stop it "
                "(Ctrl-C in its terminal), or pick another port (--port, API_PORT).",
                file=sys.stderr,
            )
            return 1
        if not env.get("MONGODB_URL"):
            url = f"mongodb://127.0.0.1:{args.mongo_port}/?directConnection=true"
            if _port_open(args.mongo_port):
                if not _answers_mongodb(url):
                    print(
                        f"[stack] something that is not MongoDB listens on {args.mongo_port}; "
                        "set MONGODB_URL or --mongo-port",
                        file=sys.stderr,
                    )
                    return 1
                env["MONGODB_URL"] = url
                print(f"[stack] reusing the MongoDB-compatible server already on {url}")
            else:
                mongo = EmbeddedMongo(args.mongo_port, str(VAR / "secantus-data"), logs)
                mongo.start()
                env["MONGODB_URL"] = mongo.url
                print(f"[stack] embedded SecantusDB on {mongo.url} (data in .var/secantus-data)")
        key = _dev_key(env)
        dialer = str(Path(sys.executable).parent / "dialer")
        plan = [("api", [dialer, "api"])]
        plan += [(f"scheduler-{i}", [dialer, "scheduler"]) for i in range(args.schedulers)]
        plan += [(f"worker-{i}", [dialer, "worker"]) for i in range(args.workers)]
        for name, cmd in plan:
            procs.append((name, subprocess.Popen(cmd, env=env, start_new_session=True)))
        wait_port(host, port, 60, procs[0][1])
        _wait_health(host, port)
        now = datetime.now(UTC).replace(microsecond=0)
        print("\n[stack] Dialer is running. Ctrl-C stops everything.")
        print(f"  API:      http://{host}:{port}/api/v1  (docs: http://{host}:{port}/api/v1/docs)")
        print(f"  API key:  {key}  (firm 'dev'; kept in .var/dev-key.json)")
        print("  Create a campaign:\n")
        print(
            CURL.format(
                host=host,
                port=port,
                key=key,
                start=now.isoformat().replace("+00:00", "Z"),
                end=(now + timedelta(hours=8)).isoformat().replace("+00:00", "Z"),
            )
        )
        print(flush=True)
        while not stopping:
            for name, proc in procs:
                if proc.poll() is not None:
                    print(
                        f"[stack] {name} exited with {proc.returncode}; stopping", file=sys.stderr
                    )
                    stopping = True
            time.sleep(0.2)
        return 0
    finally:
        print("[stack] stopping: calls in progress finish first (30 s at most)", file=sys.stderr)
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if mongo is not None:
            mongo.stop()
        logs.close()


def _answers_mongodb(url: str) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=3000)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _wait_health(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the API did not become healthy")
