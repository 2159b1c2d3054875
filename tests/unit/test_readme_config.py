"""The README's configuration table lists every setting, with its default and meaning."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from shared.config import ApiSettings, CommonSettings, SchedulerSettings, WorkerSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def expected_rows() -> dict[str, tuple[str, str, str]]:
    """variable -> (used by, default, meaning), from the settings classes."""
    rows: dict[str, tuple[str, str, str]] = {}
    classes: list[tuple[str, type[BaseSettings]]] = [
        ("all", CommonSettings),
        ("api", ApiSettings),
        ("scheduler", SchedulerSettings),
        ("worker", WorkerSettings),
    ]
    for used_by, cls in classes:
        for name, field in cls.model_fields.items():
            if used_by != "all" and name in CommonSettings.model_fields:
                continue
            default = "—" if field.default is None else f"`{field.default}`"
            rows[name.upper()] = (used_by, default, field.description or "")
    return rows


def readme_rows() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"^\| `([A-Z0-9_]+)` \| ([a-z]+) \| (.+?) \| (.+) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


def test_every_setting_is_in_the_readme_table_as_the_code_has_it() -> None:
    assert readme_rows() == expected_rows()
