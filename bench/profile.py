"""Summaries of `py-spy record --format raw` samples: where each process spent its CPU."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

#: "function (file:line)" → "function (file)": lines split one function's samples.
_LINE = re.compile(r":\d+\)$")
#: Innermost frames of a thread that waits (py-spy's idle detection misses these here).
IDLE = (
    "_recv_exactly (secantus/wire.py)",
    "SecantusDBServer._stream_awaitable_hello.<locals>._readable (secantus/server.py)",
    "socket.accept (socket.py)",
    "Condition.wait (threading.py)",
    "EpollSelector.select (selectors.py)",
    "_worker (concurrent/futures/thread.py)",
    "install.<locals>.loop (bench/probe.py)",
)


def summarise(path: Path, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Shares of samples: by innermost function (self) and by function anywhere on the
    stack (inclusive), each the ``top`` largest."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        if frames[-1] in IDLE:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "samples": [("total", float(total))],
        "self": [(f, n / total) for f, n in own.most_common(top)],
        # Frames on (almost) every stack (entry points, the event loop) say nothing.
        "inclusive": [(f, n / total) for f, n in inclusive.most_common() if n < 0.9 * total][:top],
    }


def render(rundir: Path) -> str:
    out = []
    for path in sorted(rundir.glob("*.pyspy.txt")):
        summary = summarise(path)
        name = path.name.removesuffix(".pyspy.txt")
        samples = int(summary.get("samples", [("", 0.0)])[0][1])
        out.append(f"== {name}: {samples} samples on CPU (50 a second; waits left out)")
        for kind in ("self", "inclusive"):
            out.append(f"  {kind}:")
            out.extend(f"    {share:6.1%}  {frame}" for frame, share in summary[kind])
    return "\n".join(out)
