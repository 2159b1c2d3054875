"""Figures beside their baselines: the printed table and the JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One figure, its baseline measured in the same run, and figure ÷ baseline."""

    bench: str
    figure: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str
    better: str = "higher"  # which direction of the figure is better
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or math.isnan(self.value):
            return None
        return self.value / self.baseline


@dataclass
class Report:
    kind: str
    environment: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.bench}: {row.figure} = {_num(row.value)} {row.unit}", flush=True)

    def table(self) -> str:
        head = ("benchmark", "figure", "value", "baseline (same run)", "ratio")
        lines = [
            (
                r.bench,
                r.figure,
                f"{_num(r.value)} {r.unit}",
                f"{_num(r.baseline)} {r.unit}  {r.baseline_name}"
                if r.baseline is not None
                else "—",
                f"{r.ratio:.2f}" if r.ratio is not None else "—",
            )
            for r in self.rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
        out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for line in lines:
            out.append(
                "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
            )
        return "\n".join(out)

    def write(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = RESULTS / f"{self.kind}-{stamp}.json"
        data = {
            "kind": self.kind,
            "environment": self.environment,
            "rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows],
            "details": self.details,
            "table": self.table(),
        }
        text = json.dumps(data, indent=2, default=str)
        path.write_text(text)
        (RESULTS / f"{self.kind}-latest.json").write_text(text)
        return path


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[min(rank, len(ordered) - 1)]
