"""CPU seconds and resident memory of processes, from the operating system's accounting."""

from __future__ import annotations

import os
import resource
import subprocess

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` so far (utime + stime of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After "pid (comm)": state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS of /proc/PID/status); 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def self_cpu_seconds() -> float:
    """CPU seconds of this process (the harness, for in-process baselines)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` here (for RabbitMQ: its Erlang VM, beam.smp,
    which serves every client on the machine, not only Dialer)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return None
    marker = "pid="
    at = out.find(marker)
    if at < 0:
        return None
    digits = out[at + len(marker) :].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None
