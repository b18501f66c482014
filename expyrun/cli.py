"""The command line: parses argv, dispatches, and is the only place that prints errors and exits."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from expyrun import console
from expyrun.errors import ExpyrunError, UsageError

FLAGS = ("--debug", "--dry-run", "--explain")
COMMANDS = ("list", "ls", "show", "diff", "env")

USAGE = """\
usage: expyrun CONFIG [--debug] [--dry-run] [--explain] [--KEY VALUE | --KEY=VALUE | --+NEW.KEY VALUE]...
       expyrun --version | -h | --help

Run the entry point named in CONFIG's __run__ section in a new run folder
{__output_dir__}/{__name__}/exp.{i}/ holding everything needed to reproduce it.

options:
  --debug        run under {__output_dir__}/DEBUG/, from __code__, without snapshot or freeze
  --dry-run      resolve and validate everything, print the resolved config as YAML, create nothing
  --explain      print every leaf key, its value and where it came from (implies --dry-run)
  --a.b VALUE    override a key (converted to the type of the value it replaces)
  --+a.b VALUE   add a new key on purpose (VALUE read as YAML)

environment:
  EXPYRUN_TRACEBACK=1   show Python tracebacks of expyrun's own errors
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(args)
    except ExpyrunError as error:
        if os.environ.get("EXPYRUN_TRACEBACK") == "1":
            traceback.print_exc()
        console.error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug of ours: one line, the traceback on request
        if os.environ.get("EXPYRUN_TRACEBACK") == "1":
            traceback.print_exc()
        console.error(
            f"internal error: {type(error).__name__}: {error} (rerun with EXPYRUN_TRACEBACK=1 and report the traceback)"
        )
        return 2


def _dispatch(args: list[str]) -> int:
    if not args:
        raise UsageError("missing CONFIG", "usage: expyrun CONFIG [--KEY VALUE]... (see expyrun --help)")
    first = args[0]
    if first in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if first == "--version":
        from expyrun import __version__

        sys.stdout.write(f"expyrun {__version__}\n")
        return 0
    if first in COMMANDS and not Path(first).is_file():
        raise UsageError(f"`expyrun {first}` is not available in this version")
    return _run_config(args)


def _run_config(args: list[str]) -> int:
    flags = {flag for flag in args if flag in FLAGS}
    rest = [arg for arg in args if arg not in FLAGS]
    if not rest or rest[0].startswith("--"):
        raise UsageError("missing CONFIG", "the first argument that is not a flag must be a YAML config file")
    config_file, tokens = rest[0], rest[1:]

    from expyrun.config import parse_overrides, resolve_config

    overrides = parse_overrides(tokens)
    resolved = resolve_config(config_file, overrides)
    for message in resolved.warnings:
        console.warning(message)

    from expyrun.run.entry_point import check_entry_point

    check_entry_point(resolved.run)
    if "--explain" in flags or "--dry-run" in flags:
        if "--explain" in flags:
            from expyrun.config.explain import explain

            sys.stdout.write(explain(resolved))
        else:
            from expyrun.config.dump import dump_yaml

            sys.stdout.write(dump_yaml(resolved.for_disk()))
        return 0

    from expyrun.run.launch import launch

    return launch(resolved, debug="--debug" in flags, argv=[config_file, *tokens], config_file=Path(config_file))
