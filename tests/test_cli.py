"""The CLI table: each command is registered by the module it names, and `--help` lists every command."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from serving.cli import COMMANDS, build_parser
from tests.support import REPO


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_is_registered_by_its_module(name: str) -> None:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    importlib.import_module(COMMANDS[name][0]).register(subparsers)
    assert name in subparsers.choices


def test_help_lists_every_command_without_importing_them() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "serving.cli", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout
    probe = (
        "import sys, serving.cli as c; c.build_parser(['get']); print('serving.commands.up' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO).stdout.strip()
        == "False"
    )


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser(["nope"]).parse_args(["nope"])
    assert caught.value.code == 2


def test_version_and_every_options_default_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser(["--version"]).parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("serving ")
    serve = build_parser(["serve"])._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = " ".join(serve.format_help().split())
    for shown in ("--port PORT (default: 8080)", "--workers WORKERS worker processes (default: 1)"):
        assert shown in text, text
    assert "(default: 67108864)" in text and "(default: None)" not in text and "(default: False)" not in text
