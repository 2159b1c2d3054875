"""Real dialer processes for end-to-end tests, stopped with SIGTERM afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DIALER = str(Path(sys.executable).parent / "dialer")
#: What each process logs once it serves (and handles SIGTERM).
READY_WORDS = ("scheduler ready", "dialer worker ready", "api listening")


class Processes:
    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = {**os.environ, **env}
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [DIALER, *args], env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs[name] = proc
        return proc

    def create_key(self, firm: str = "acme") -> str:
        """A fresh API key for ``firm``, made with `dialer keys create` (the operator's way)."""
        created = subprocess.run(
            [DIALER, "keys", "create", "--firm", firm, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return str(json.loads(created.stdout)["key"])

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        """Wait until the process logged that it is ready (its SIGTERM handler is set)."""
        deadline = time.monotonic() + timeout
        path = self.logdir / f"{name}.log"
        while time.monotonic() < deadline:
            text = path.read_text() if path.exists() else ""
            if any(word in text for word in READY_WORDS):
                return
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited early:\n{text[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{name} not ready after {timeout}s")

    def stop_all(self, timeout: float = 60) -> dict[str, int]:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.wait_ready(name)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self.procs.clear()
        return codes

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.logdir.glob("*.log"))
        )
