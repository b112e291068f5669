"""`spec.predictor.model.args` -> `serving serve` flags: KServe's model-server flags translated, the rest checked.

KServe appends `model.args` to its model server's command line, whose flags are snake_case (`--model_name iris`,
`--workers 2`, `--http_port 8080`). Ours are `serving serve`'s. So, once, for both backends:

- renamed: `--model_name X` -> `--name X` (the model's name, which clients put in the URL), `--nthread N` ->
  `--native-threads N` (XGBoost's threads per prediction: its OpenMP pool);
- dropped, with a warning: `--http_port`, `--grpc_port`, `--model_dir` (and ours, `--host`, `--port`,
  `--grpc-port`, `--model-dir`): the backend chooses the ports, and the model folder comes from `storageUri`;
- everything else must be a `serving serve` flag (`--workers` is one, as in KServe), else the apply is refused
  with the flag named — never an "unrecognized arguments" crash of the revision later.

The user's flags come last on the command line (after the runtime's), so what they say wins.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

# KServe's flags that mean one of ours: its xgbserver's (and lgbserver's) `--nthread N`, the threads a prediction
# uses, is our OpenMP/BLAS pool size (its stock kserve-xgbserver runtime passes --nthread=1)
RENAMED = {"--model_name": "--name", "--nthread": "--native-threads"}
# The backend sets these: a value here would be overridden (ports) or point at a folder the model is not in.
BACKEND_FLAGS = (
    "--http_port",
    "--grpc_port",
    "--model_dir",
    "--host",
    "--port",
    "--grpc-port",
    "--model-dir",
)
NAME_FLAGS = ("--name", "--model_name")


class ArgsError(ValueError):
    """A flag `serving serve` does not take; the message names it."""


def _split(arg: str) -> tuple[str, str | None]:
    flag, sep, value = arg.partition("=")
    return (flag, value) if sep and arg.startswith("--") else (arg, None)


def _pairs(args: Sequence[str]) -> list[tuple[str, list[str], list[str]]]:
    """Each flag with the values that follow it (`--x=1` and `--x 1` alike) and the args as written."""
    out: list[tuple[str, list[str], list[str]]] = []
    for arg in args:
        flag, value = _split(arg)
        if (flag.startswith("-") and flag != "-" and not _negative_number(flag)) or not out:
            out.append((flag, [] if value is None else [value], [arg]))
        else:
            out[-1][1].append(arg)
            out[-1][2].append(arg)
    return out


def _negative_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def translate(args: Sequence[str]) -> list[str]:
    """The `serving serve` flags these args mean (KServe's renamed, the backend's own dropped)."""
    out: list[str] = []
    for flag, values, written in _pairs(args):
        if flag in BACKEND_FLAGS:
            continue
        out += [RENAMED[flag], *values] if flag in RENAMED else written
    return out


def dropped(args: Sequence[str], where: str) -> list[str]:
    """One warning per flag that `translate` drops."""
    return [
        f"{where}: {flag} is dropped: the backend sets "
        + ("the model folder (from storageUri)" if "dir" in flag else "the ports (8080 on Kubernetes)")
        for flag, _, _ in _pairs(args)
        if flag in BACKEND_FLAGS
    ]


def model_name(args: Sequence[str]) -> str | None:
    """The model name the args give (`--model_name` or `--name`, the last one), if any."""
    found = None
    for flag, values, _ in _pairs(args):
        if flag in NAME_FLAGS and values:
            found = values[0]
    return found


class _Refusing(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgsError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ArgsError(message or "not a model server flag")


def check(args: Sequence[str]) -> None:
    """ArgsError naming the first flag `serving serve` would refuse (checked against its own parser)."""
    if not args:
        return
    for flag, _, _ in _pairs(args):
        if flag in ("-h", "--help"):
            raise ArgsError(f"{flag} is not a model server setting")
    from serving.commands.serve import register  # the parser the process runs with (imported only if needed)
    from serving.observability.options import add_flags

    parser = _Refusing(prog="serving")
    subparsers: Any = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    add_flags(subparsers.choices["serve"], "serve")
    try:
        parser.parse_args(["serve", "--model-dir", "/mnt/models", *translate(args)])
    except ArgsError as exc:
        raise ArgsError(
            f"{exc} (these are appended to `serving serve`: use its flags, see `serving serve --help`; "
            f"KServe's --model_name, --nthread and --workers are understood, --http_port/--grpc_port/--model_dir "
            "dropped)"
        ) from exc
