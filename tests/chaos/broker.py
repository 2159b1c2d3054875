"""A private RabbitMQ node for a fault-injection run, which the run may stop and restart.

It runs Debian's RabbitMQ (the package ``make test`` installs) as a child process
with its own node name, ports and data directory, so restarting it disturbs nothing
else on the machine (not the broker ``make run`` or other tests use).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import aio_pika

from services.stack import free_port, wait_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def available() -> str | None:
    """``None`` when a private node can run here, else why not."""
    if not SERVER.exists():
        return f"{SERVER} is missing: install Debian's rabbitmq-server (make test does)"
    return None


class PrivateRabbit:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"chaos{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        base = self.workdir
        (base / "plugins").write_text("[].\n")
        return {
            **os.environ,
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "no-config"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "no-advanced.config"),
        }

    def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The node would start the port mapper in its own process group, which stop()
        # signals; other nodes on this machine need it, so start it outside that group.
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        subprocess.run([epmd, "-daemon"], check=False)
        out = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [str(SERVER)],
            env=self._env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        wait_port("127.0.0.1", self.port, timeout, self.proc)
        self._await_startup(timeout)

    def _await_startup(self, timeout: float) -> None:
        """Until an AMQP handshake succeeds (the port opens a little before)."""
        deadline = time.monotonic() + timeout

        async def handshake() -> None:
            connection = await aio_pika.connect(self.url, timeout=5)
            await connection.close()

        while True:
            try:
                asyncio.run(handshake())
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"RabbitMQ node {self.node} did not start") from None
                time.sleep(0.2)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node cleanly (SIGTERM to its process group), SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1
