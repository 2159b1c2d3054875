"""`dialer ... --help` for every command of the real console script.

The commands are found by walking the parser of ``services/cli.py``, so a new
subcommand (or subcommand group) is covered without touching this file.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Iterator

import pytest

from services.cli import ENV_NOTE, _parser
from tests.support.processes import DIALER


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(_parser()))


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_walk_finds_nested_commands() -> None:
    assert {("api",), ("scheduler",), ("worker",), ("keys",), ("keys", "create")} <= set(COMMANDS)
    assert len(COMMANDS) > 8


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(("dialer", *p)))
def test_help_describes_the_command(path: tuple[str, ...]) -> None:
    parser = COMMANDS[path]
    done = subprocess.run(
        [DIALER, *path, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith(f"usage: {' '.join(('dialer', *path))}")
    description = parser.description or ""
    assert len(description.split()) >= 5, f"{parser.prog}: no real description"
    assert _words(description) in _words(done.stdout)
    usage_lines = parser.format_usage().count("\n")
    assert done.stdout.count("\n") > usage_lines + 2


@pytest.mark.parametrize("path", [p for p in COMMANDS if p[:1] == ("keys",)])
def test_keys_help_names_the_environment(path: tuple[str, ...]) -> None:
    out = subprocess.run(
        [DIALER, *path, "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert _words(ENV_NOTE) in _words(out)
