"""The command line: parses argv, dispatches, and is the only place that prints errors and exits."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from expyrun import console
from expyrun.errors import ConfigError, ExpyrunError, UsageError

if TYPE_CHECKING:
    from expyrun.config import ResolvedConfig
    from expyrun.execute.launch_spec import LaunchSpec
    from expyrun.sweep.spec import SweepSpec
    from expyrun.tune.spec import StudySpec

FLAGS = ("--debug", "--dry-run", "--explain", "--needed")
HELP = ("-h", "--help")
COMMANDS = ("list", "ls", "show", "diff", "env", "dashboard")

USAGE = """\
usage: expyrun CONFIG [--debug] [--dry-run] [--explain] [--needed] [--KEY VALUE | --KEY=VALUE | --+NEW.KEY VALUE]...
       expyrun list [DIR] [--json]        (alias: ls)
       expyrun show RUN
       expyrun diff RUN_A RUN_B
       expyrun env RUN [--venv PATH] [--check]
       expyrun dashboard STUDY_RUN [--port P] [--allow-edits]
       expyrun --version | -h | --help

Run the entry point named in CONFIG's __run__ section in a new run folder
{__output_dir__}/{__name__}/exp.{i}/ holding everything needed to reproduce it.

options:
  --debug        run under {__output_dir__}/DEBUG/, from __code__, without snapshot or freeze
  --dry-run      resolve and validate everything, print the resolved config as YAML, create nothing
  --explain      print every leaf key, its value and where it came from (implies --dry-run)
  --needed       skip a run (or sweep point) already completed with the same config and code; say
                 which run it reuses
  --a.b VALUE    override a key (converted to the type of the value it replaces)
  --+a.b VALUE   add a new key on purpose (VALUE read as YAML)

commands:
  list   every run below DIR: status (died when its process is gone), start, duration, commit,
         result, and the config values that differ between runs of the same name
  show   a run's metadata, resolved config and last log lines
  diff   config keys changed/added/removed, requirement changes and commit change between two runs
  env    compare a run's frozen requirements with this interpreter (--check, exit 1 on differences)
         or create/sync a virtual environment matching them (--venv PATH, with pip-tools)
  dashboard  serve optuna-dashboard for a study folder's study on 127.0.0.1 (port 8080 or the next
         free one) until Ctrl-C, read-only unless --allow-edits (pip install 'expyrun[dashboard]')

environment:
  EXPYRUN_TRACEBACK=1   show Python tracebacks of expyrun's own errors
"""


def main(argv: list[str] | None = None) -> int:
    """The program; with `argv` None (the real command line) the process ends here.

    Ending with `os._exit` once stdout and stderr are flushed spares the interpreter's teardown
    of every imported module (several milliseconds of each launch): nothing expyrun holds needs
    finalising, and the run's own processes have ended or been left on purpose.
    """
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is not None:
        return code
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be shown
            stream.flush()
    os._exit(code)


def _main(args: list[str]) -> int:
    try:
        return _dispatch(args)
    except ExpyrunError as error:
        _traceback_on_request()
        console.error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug of ours: one line, the traceback on request
        _traceback_on_request()
        console.error(
            f"internal error: {type(error).__name__}: {error} (rerun with EXPYRUN_TRACEBACK=1 and report the traceback)"
        )
        return 2


def _traceback_on_request() -> None:
    if os.environ.get("EXPYRUN_TRACEBACK") == "1":
        import traceback

        traceback.print_exc()


def _dispatch(args: list[str]) -> int:
    if not args:
        raise UsageError("missing CONFIG", "usage: expyrun CONFIG [--KEY VALUE]... (see expyrun --help)")
    first = args[0]
    if first in COMMANDS and not Path(first).is_file():
        return _browse(first, args[1:])
    _refuse_misspelt_command(first)
    if any(arg in HELP for arg in args):  # `expyrun cfg.yml --help` asks for help, not to set a key `help`
        sys.stdout.write(USAGE)
        return 0
    if first == "--version":
        from expyrun import __version__

        sys.stdout.write(f"expyrun {__version__}\n")
        return 0
    return _run_config(args)


def _browse(command: str, args: list[str]) -> int:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog}: {message}", f"see {self.prog} --help")

    command = "list" if command == "ls" else command
    parser = _Parser(prog=f"expyrun {command}")
    if command == "list":
        parser.add_argument("dir", nargs="?", default=".")
        parser.add_argument("--json", action="store_true", help="one JSON object per run on stdout")
    elif command == "diff":
        parser.add_argument("run_a")
        parser.add_argument("run_b")
    else:
        parser.add_argument("run")
    if command == "env":
        parser.add_argument("--venv", type=Path, help="create or sync this virtual environment")
        parser.add_argument("--check", action="store_true", help="only compare with this interpreter")
    if command == "dashboard":
        parser.add_argument("--port", type=int, help="first port to try (default 8080)")
        parser.add_argument("--allow-edits", action="store_true", help="let the dashboard change the study")
    options = parser.parse_args(args)
    if command == "dashboard":
        from expyrun.browse.dashboard import dashboard

        return dashboard(Path(options.run), options.port, options.allow_edits)

    from expyrun.browse.runs import require_run

    if command == "list":
        from expyrun.browse.listing import list_runs

        root = Path(options.dir)
        if not root.is_dir():
            raise UsageError(f"{options.dir}: no such folder")
        return list_runs(root, options.json)
    if command == "show":
        from expyrun.browse.show import render_show, render_sweep

        if (Path(options.run) / "sweep.json").is_file():
            sys.stderr.write(render_sweep(Path(options.run)))
            return 0
        sys.stderr.write(render_show(require_run(options.run)))
        return 0
    if command == "diff":
        from expyrun.browse.diff import render_diff

        sys.stderr.write(render_diff(require_run(options.run_a), require_run(options.run_b)))
        return 0
    from expyrun.browse import environment

    run_dir = require_run(options.run)
    if options.check or options.venv is None:
        return environment.check(run_dir)
    return environment.restore(run_dir, options.venv)


def _run_config(args: list[str]) -> int:
    flags = {flag for flag in args if flag in FLAGS}
    rest = [arg for arg in args if arg not in FLAGS]
    suspects = _check_flags(rest)
    if not rest or rest[0].startswith("--"):
        raise UsageError("missing CONFIG", "the first argument that is not a flag must be a YAML config file")
    config_file, tokens = rest[0], rest[1:]

    from expyrun.config import parse_overrides, resolve_config

    overrides = parse_overrides(tokens)
    try:
        resolved = resolve_config(config_file, overrides)
    except ConfigError:
        _refuse_misspelt_flags(config_file, suspects)
        raise
    sweeping = isinstance(resolved.raw.get("__sweep__"), dict)
    if sweeping:
        from expyrun.sweep.references import point_only
    for message in resolved.warnings:
        if not (sweeping and point_only(message)):  # resolved per point
            console.warning(message)

    launch_spec, sweep, spec = _check(resolved, config_file)
    if launch_spec.launcher == "slurm" and "--explain" not in flags:
        from expyrun.execute.slurm_submit import submit

        return submit(resolved, launch_spec, sweep, spec, args, flags)
    if sweep is not None:
        return _sweep(resolved, sweep, launch_spec, args, flags)
    if "--explain" in flags or "--dry-run" in flags:
        from expyrun.config.dump import dump_yaml

        sys.stdout.write(dump_yaml(resolved.for_disk()))
        if "--explain" in flags:  # the YAML on stdout, as --dry-run; the explanation for people on stderr
            from expyrun.config.explain import explain

            sys.stdout.flush()
            sys.stderr.write(explain(resolved))
        return 0

    if spec is not None and launch_spec.workers > 1:
        from expyrun.execute.study_workers import run_study_workers

        return run_study_workers(args, launch_spec.workers)
    from expyrun.run.launch import launch
    from expyrun.run.prepare import run_base

    debug = "--debug" in flags
    body, fields = None, None
    if spec is not None:
        from expyrun.tune.driver import Driver

        body = Driver(resolved, spec, run_base(resolved, debug), sys.stderr.isatty(), launch_spec).run
        fields = {"study": spec.study_name}
    gpus = launch_spec.gpus if spec is None else None  # a study gives each trial worker its own
    return launch(resolved, debug, args, Path(config_file), body, fields, gpus, needed="--needed" in flags)


def _misspelt(word: str, choices: tuple[str, ...]) -> str | None:
    """The choice `word` is a misspelling of (`--dryrun`, `--Debug`, `--neded`, `lst`), or None.

    Compared without dashes and case, and closer than `difflib`'s default: `--seed` is a key, not
    a misspelt `--needed`.
    """
    import difflib

    def bare(text: str) -> str:
        return text.lstrip("-").lower().replace("_", "-")

    by_bare = {bare(choice): choice for choice in choices}
    close = difflib.get_close_matches(bare(word), list(by_bare), n=1, cutoff=0.75)
    return by_bare[close[0]] if close else None


def _refuse_misspelt_command(first: str) -> None:
    """`expyrun lst`: a word close to a command and naming no file is a misspelt command.

    Without this it read as a config file name and got "no such config file".
    """
    if first.startswith("-") or "." in first or "/" in first or os.path.lexists(first):
        return
    command = _misspelt(first, COMMANDS)
    if command is not None:
        raise UsageError(f"`{first}`: no such command or config file", f"did you mean `expyrun {command}`?")


def _check_flags(rest: list[str]) -> list[tuple[str, str]]:
    """Refuse a misspelt flag (`--dryrun`) or an option with no value, before anything is read.

    Every `--x` that is not a flag is an override, so a misspelt flag used to take the next
    argument as its value or end with "missing value". An option followed by nothing or by
    another option (`--dryrun --lr 1`) has no value: a flag-like one is named as the flag it is
    close to. Returns the flag-like options that do have a value (`--dryrun x`): they are refused
    only if the config has no such key (`_refuse_misspelt_flags`).
    """
    suspects: list[tuple[str, str]] = []
    position = 1  # rest[0] is the config; an option there is refused (`expyrun --dryrun cfg.yml`)
    first_flag = _misspelt(rest[0], FLAGS) if rest and rest[0].startswith("-") else None
    if first_flag is not None:
        raise UsageError(f"unknown flag `{rest[0]}`", f"did you mean `{first_flag}`?")
    while position < len(rest):
        token = rest[position]
        flag = None if token.startswith("--+") or "=" in token else _misspelt(token, FLAGS)
        if not token.startswith("--") or "=" in token:
            if flag is not None:  # `-debug`
                raise UsageError(f"unknown flag `{token}`", f"did you mean `{flag}`?")
            position += 1  # `--key=value`, or a stray word that parse_overrides names
            continue
        if position + 1 == len(rest) or _is_option(rest[position + 1]):
            if flag is not None:
                raise UsageError(f"unknown flag `{token}`", f"did you mean `{flag}`?")
            raise UsageError(
                f"{token}: missing value",
                f"write {token} VALUE or {token}=VALUE; expyrun's flags are {', '.join(FLAGS)}",
            )
        if flag is not None:
            suspects.append((token, flag))
        position += 2
    return suspects


def _is_option(token: str) -> bool:
    """`--key`, `--+new.key` or `--key=value`: not the value of the option before it."""
    import re

    return re.match(r"--\+?[A-Za-z_]", token) is not None and " " not in token.partition("=")[0]


def _refuse_misspelt_flags(config_file: str, suspects: list[tuple[str, str]]) -> None:
    """A flag-like override (`--dryrun 1`) that the config has no key for is a misspelt flag."""
    if not suspects:
        return
    from expyrun.config.inheritance import load_config
    from expyrun.config.tree import lookup

    try:
        data = load_config(config_file, Path.cwd()).data
    except ExpyrunError:  # the config's own error is the one to show
        return
    for token, flag in suspects:
        if lookup(data, token[2:]) is None:
            raise UsageError(
                f"unknown flag `{token}`", f"did you mean `{flag}`? {config_file} has no key `{token[2:]}` either"
            )


def _check(resolved: ResolvedConfig, config_file: str) -> tuple[LaunchSpec, SweepSpec | None, StudySpec | None]:
    """Everything checked before anything is created: what runs (entry point, command, templates,
    interpreter), where (`__launch__`), and which points (`__sweep__` or `__optuna__`)."""
    run = resolved.run
    if not run.is_command:
        from expyrun.run.entry_point import check_entry_point

        check_entry_point(run)
    if run.is_command or run.python is not None or run.templates:
        from expyrun.run.command import check_run

        check_run(resolved)
    from expyrun.execute.launch_spec import parse_launch

    values = resolved.values
    launch_spec = parse_launch(values.get("__launch__"), values.get("__optuna__"))
    if values.get("__sweep__") is not None and values.get("__optuna__") is not None:
        raise ConfigError("`__sweep__` and `__optuna__` cannot be used together", "a study proposes its own points")
    if values.get("__sweep__") is not None:
        from expyrun.sweep.spec import parse_sweep

        return launch_spec, parse_sweep(values["__sweep__"], resolved.raw, Path(config_file).stem), None
    if values.get("__optuna__") is None:
        return launch_spec, None, None
    if run.python is not None and not run.is_command:
        raise ConfigError(
            "`__run__.__python__` with `__optuna__`: study trials run in expyrun's interpreter",
            "use a command run calling that interpreter, or install the tool's dependencies here",
        )
    from expyrun.tune.spec import parse_spec

    return launch_spec, None, parse_spec(values["__optuna__"], resolved.raw, run.name)


def _sweep(
    resolved: ResolvedConfig, sweep: SweepSpec, launch_spec: LaunchSpec, args: list[str], flags: set[str]
) -> int:
    """A config with `__sweep__`: print its points (`--dry-run`), explain it, or run them all."""
    from expyrun.sweep.run import describe_points, point_config, run_sweep

    cwd = Path.cwd()
    if "--explain" in flags:
        from expyrun.config.explain import explain

        first = point_config(resolved, next(sweep.points()), cwd)
        sys.stderr.write(f"# point 0 of {sweep.size}; keys marked `sweep` take each point's value\n")
        sys.stderr.write(explain(first))
    if "--dry-run" in flags or "--explain" in flags:
        from expyrun.config.dump import dump_yaml

        sys.stdout.write(dump_yaml({"sweep": sweep.name, "points": list(describe_points(resolved, sweep, cwd))}))
        return 0
    return run_sweep(resolved, sweep, launch_spec, args, "--debug" in flags, "--needed" in flags)
