"""The real stack under measurement: the project's embedded database server, the local
RabbitMQ and `dialer` processes (each with the probe of :mod:`bench.probe`).

Each benchmark runs its own set of processes (a database of its own, one AMQP prefix
for the whole run), so the settings of one (talk time, clock rate) never leak into
another. With ``profile`` set, every process, the database server included, runs under
``py-spy record`` and its samples are summarised by :mod:`bench.profile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from pymongo import AsyncMongoClient

from bench.procstat import cpu_seconds, listener_pid, rss_mib
from services.stack import EmbeddedMongo, free_port, wait_port
from shared.messaging.topology import Names
from shared.messaging.topology import delete as delete_topology

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
READY_WORDS = ("scheduler ready", "dialer worker ready", "api listening")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    probe: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def target_pid(self) -> int:
        """The Python process itself (the child of py-spy when profiled)."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return self.pid
        return int(children[0]) if children and _is_pyspy(self.pid) else self.pid

    def counters(self) -> dict[str, int]:
        try:
            return dict(json.loads(self.probe.read_text()))
        except (OSError, ValueError):
            return {}


def _is_pyspy(pid: int) -> bool:
    try:
        return "py-spy" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@dataclass
class Snapshot:
    """CPU seconds, memory and counters of every process at one instant."""

    at: float
    cpu: dict[str, float]
    rss: dict[str, float]
    counters: dict[str, dict[str, int]] = field(default_factory=dict)

    def cpu_delta(self, before: Snapshot, names: list[str]) -> float:
        return sum(self.cpu.get(n, 0.0) - before.cpu.get(n, 0.0) for n in names)

    def count_delta(self, before: Snapshot, key: str) -> int:
        return sum(
            c.get(key, 0) - before.counters.get(name, {}).get(key, 0)
            for name, c in self.counters.items()
        )


class Stack:
    """One benchmark run's servers and processes."""

    def __init__(self, rundir: Path, profile: bool = False) -> None:
        self.rundir = rundir
        self.profile = profile
        self.amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
        self.prefix = f"bench{os.getpid()}"
        self.mongo: EmbeddedMongo | None = None
        self.mongo_url = os.environ.get("MONGODB_URL", "")
        self.procs: dict[str, Proc] = {}
        self.env: dict[str, str] = {}
        self.rabbit_port = urlsplit(self.amqp_url).port or 5672

    # -- servers --------------------------------------------------------------------
    def start_servers(self) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        if not self.mongo_url:
            self.mongo = _Mongo(
                free_port(),
                str(self.rundir / "secantus-data"),
                open(self.rundir / "secantus.log", "ab"),  # noqa: SIM115 - the server's lifetime
                self._pyspy("secantus") if self.profile else [],
            )
            self.mongo.start()
            self.mongo_url = self.mongo.url

    def stop_servers(self) -> None:
        self.stop_processes()
        with contextlib.suppress(Exception):
            asyncio.run(self._delete_topology())
        if self.mongo is not None:
            self.mongo.stop(timeout=60)

    def mongo_pid(self) -> int | None:
        if self.mongo is None or self.mongo.proc is None:
            return None
        return Proc("secantus", self.mongo.proc, Path(), Path()).target_pid()

    async def _delete_topology(self) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            await delete_topology(await connection.channel(), Names(self.prefix))

    # -- dialer processes -----------------------------------------------------------
    def base_env(self, db: str, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "AMQP_URL": self.amqp_url,
            "AMQP_PREFIX": self.prefix,
            "MONGODB_URL": self.mongo_url,
            "MONGODB_DB": db,
            "LOG_JSON": "1",
            **extra,
        }

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log = self.rundir / f"{name}.log"
        probe = self.rundir / f"{name}.probe.json"
        probe.unlink(missing_ok=True)
        cmd = [PY, "-m", "bench.probe", *args]
        if self.profile:
            cmd = [*self._pyspy(name), *cmd]
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                cmd,
                env={**env, "BENCH_PROBE_FILE": str(probe)},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log, probe)
        self.procs[name] = proc
        return proc

    def _pyspy(self, name: str) -> list[str]:
        spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
        out = self.rundir / f"{name}.pyspy.txt"
        # --gil: only the thread holding the GIL, i.e. where Python code spends CPU.
        return [
            spy,
            "record",
            "--gil",
            "--format",
            "raw",
            "--rate",
            "50",
            "--output",
            str(out),
            "--",
        ]

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            while True:
                text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
                if any(word in text for word in READY_WORDS):
                    break
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{proc.name} did not start:\n{text[-3000:]}")
                time.sleep(0.05)

    def start_engine(
        self, db: str, schedulers: int, workers: int, env: dict[str, str], api: bool = True
    ) -> str | None:
        """API (optional), schedulers and workers sharing ``env``; returns the API's URL."""
        url = None
        if api:
            port = free_port()
            self.start("api", ["api", "--port", str(port)], self.base_env(db, **env))
            url = f"http://127.0.0.1:{port}"
        for i in range(schedulers):
            self.start(f"scheduler-{i}", ["scheduler"], self.base_env(db, **env))
        for i in range(workers):
            self.start(f"worker-{i}", ["worker"], self.base_env(db, **env))
        self.wait_ready()
        if url is not None:
            _wait_health(url)
        return url

    def create_key(self, db: str, firm: str = "bench") -> str:
        out = subprocess.run(
            [PY, "-m", "bench.probe", "keys", "create", "--firm", firm, "--json"],
            env=self.base_env(db),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return str(json.loads(out.stdout)["key"])

    def stop_processes(self, timeout: float = 120) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                # Under py-spy, signal the Python process so py-spy writes its samples.
                os.kill(proc.target_pid(), signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                codes[name] = proc.popen.wait()
        self.procs.clear()
        return codes

    # -- measurement ----------------------------------------------------------------
    def snapshot(self, fresh_counters: bool = True) -> Snapshot:
        if fresh_counters:
            time.sleep(0.6)  # the probes write every 0.5 s
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        counters: dict[str, dict[str, int]] = {}
        for name, proc in self.procs.items():
            pid = proc.target_pid()
            cpu[name] = cpu_seconds(pid)
            rss[name] = rss_mib(pid)
            counters[name] = proc.counters()
        mongo = self.mongo_pid()
        if mongo is not None:
            cpu["db-server"] = cpu_seconds(mongo)
            rss["db-server"] = rss_mib(mongo)
        rabbit = listener_pid(self.rabbit_port)
        if rabbit is not None:
            cpu["rabbitmq"] = cpu_seconds(rabbit)
            rss["rabbitmq"] = rss_mib(rabbit)
        return Snapshot(time.monotonic(), cpu, rss, counters)

    def client(self) -> AsyncMongoClient[dict[str, Any]]:
        return AsyncMongoClient(self.mongo_url, tz_aware=True, tzinfo=UTC, appname="bench")

    async def versions(self) -> dict[str, Any]:
        client = self.client()
        try:
            info = await client.admin.command("buildInfo")
        finally:
            await client.close()
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            props = connection.transport.connection.server_properties  # type: ignore[union-attr]
        product = props.get("product", b"RabbitMQ")
        version = props.get("version", b"?")
        return {
            "cores": os.cpu_count(),
            "rabbitmq": f"{_text(product)} {_text(version)}",
            "db_server": _db_server(info, embedded=self.mongo is not None),
            "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "python": sys.version.split()[0],
            "started_at": datetime.now(UTC).isoformat(),
        }


class _Mongo(EmbeddedMongo):
    """The project's embedded server, optionally under py-spy."""

    def __init__(self, port: int, storage: str, log: Any, prefix: list[str]) -> None:
        super().__init__(port, storage, log)
        self.prefix = prefix

    def start(self, timeout: float = 60.0) -> None:
        if not self.prefix:
            super().start(timeout)
            return
        exe = shutil.which("secantusd-py") or str(Path(PY).parent / "secantusd-py")
        self.proc = subprocess.Popen(
            [
                *self.prefix,
                *(exe, "--host", "127.0.0.1", "--port", str(self.port)),
                *("--storage-path", self.storage, "--log-level", "WARNING"),
            ],
            stdout=self.log_file,
            stderr=self.log_file,
            start_new_session=True,
        )
        wait_port("127.0.0.1", self.port, timeout, self.proc)

    def stop(self, timeout: float = 20.0) -> None:
        if self.prefix and self.proc is not None and self.proc.poll() is None:
            pid = Proc("db", self.proc, Path(), Path()).target_pid()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            return
        super().stop(timeout)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _db_server(info: dict[str, Any], embedded: bool) -> str:
    if not embedded:
        return f"MongoDB {info.get('version', '?')}"
    try:
        from importlib.metadata import version

        secantus = version("secantusdb")
    except Exception:
        secantus = None
    wire = f"MongoDB-compatible, reports version {info.get('version', '?')}"
    return f"SecantusDB {secantus} ({wire})" if secantus else wire


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _wait_health(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/health", timeout=2) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError("the API did not become healthy")


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[None]:
    """Stop this benchmark's processes afterwards, whatever happens."""
    try:
        yield
    finally:
        stack.stop_processes()
