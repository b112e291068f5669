"""The `serving` command. argv is parsed here and nowhere else."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from serving.errors import ServingError
from serving.observability import log_format
from serving.observability.options import add_flags as observability_flags

# Command name -> (module that registers it, one-line help). Only the module of the command being run is
# imported, so `serving storage pull` in an init container or `serving get` start in a fraction of a second.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serving.commands.serve", "serve the model(s) in a directory over V1 and V2 REST"),
    "demo": ("serving.commands.demo", "serve the iris example through `serving up` and answer a prediction"),
    "up": ("serving.commands.up", "run the control plane and router on this machine"),
    "apply": ("serving.commands.control", "create or update InferenceServices from YAML"),
    "get": ("serving.commands.control", "list InferenceServices, or show one"),
    "delete": ("serving.commands.control", "delete an InferenceService (drains, then stops it)"),
    "rollout": ("serving.commands.rollout", "steer or watch a rollout (canary analysis, promote, undo)"),
    "wait": (
        "serving.commands.control",
        "wait until an InferenceService is ready (exit 1 with the reason if not)",
    ),
    "loadtest": ("serving.commands.loadtest", "run a Locust load test (headless) and report the results"),
    "storage": (
        "serving.commands.storage",
        "fetch models from a storageUri (path, file, http(s), pvc, s3, gs, az / Azure Blob)",
    ),
    "transform": (
        "serving.commands.transform",
        "serve a transformer (pre/post-processing) in front of a predictor",
    ),
    "render": ("serving.commands.render", "print the Kubernetes manifests of InferenceService YAML"),
    "crd": ("serving.commands.render", "print the InferenceService CustomResourceDefinition"),
    "convert": ("serving.commands.convert", "rewrite KServe InferenceService YAML to the serving.dev group"),
    "operator": ("serving.commands.operator", "run the Kubernetes operator (reconciles InferenceServices)"),
    "router": ("serving.commands.router", "run the router alone, reading its route table from a ConfigMap"),
}


class DefaultsShown(argparse.HelpFormatter):
    """`--help` says each option's default (what `serving serve --help` is read for), unless its help already
    does or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default in (None, False, argparse.SUPPRESS)
            or "default" in text
            or "%(default)" in text
        ):
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Full parsers for the chosen command's module; one-line entries for the others (`--help` lists all)."""
    from serving import __version__

    parser = argparse.ArgumentParser(prog="serving", description="Model-serving gateway (KServe-compatible).")
    parser.add_argument("--version", action="version", version=f"serving {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    if chosen in COMMANDS:
        importlib.import_module(COMMANDS[chosen][0]).register(subparsers)
        for name, command in subparsers.choices.items():
            observability_flags(command, name)  # --log-format everywhere; tracing/logger flags on servers
            command.formatter_class = DefaultsShown
            for action in command._actions:  # argparse shows no default for an option without help
                if action.help is None and action.option_strings and action.default not in (None, False):
                    action.help = "(default: %(default)s)"
    for name, (_, help_text) in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    if "SERVING_PARENT_PID" in os.environ:  # started by `serving up`'s supervisor: die with it
        from serving.control.local.parent_watch import die_with_parent_if_asked

        die_with_parent_if_asked()
    args = build_parser(argv).parse_args(argv)
    log_format.configure(getattr(args, "log_format", None))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("azure").setLevel(logging.WARNING)  # its SDK logs every request and response at INFO
    try:
        return int(args.func(args) or 0)
    except ServingError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `serving ... | head`: the reader left; no traceback, as other CLIs exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not raise again
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it


if __name__ == "__main__":
    sys.exit(main())
