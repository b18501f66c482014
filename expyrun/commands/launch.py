"""`expyrun CONFIG [flags] [--KEY VALUE]...`: resolve a config, check everything, then run it.

What runs is decided here: one run, a sweep's points, an Optuna study (one launch or `workers: N`),
or a submission to Slurm (`__launch__.launcher: slurm`). Everything is checked before anything is
created (`_check`), so `--dry-run` and a launch refuse the same configs.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from expyrun import console
from expyrun.errors import ConfigError, ExpyrunError, UsageError

if TYPE_CHECKING:
    from expyrun.config import ResolvedConfig
    from expyrun.execute.launch_spec import LaunchSpec
    from expyrun.sweep.spec import SweepSpec
    from expyrun.tune.spec import StudySpec

FLAGS = ("--debug", "--dry-run", "--explain", "--needed", "--queue")


def main(args: list[str]) -> int:
    """Resolve CONFIG with its overrides and flags, check it, then run it, its sweep or its study."""
    global _paused
    _paused = gc.isenabled()
    gc.disable()  # until the checks are done (`_startup_over`)
    try:
        return _main(args)
    finally:
        _startup_over()


_paused = False  # whether `main` paused the cyclic garbage collector (a caller's own pause is left as it is)


def _startup_over() -> None:
    """Collect garbage again, the objects made so far frozen: the imports, the config and the checks
    make tens of thousands of objects that live as long as the launcher, and the collector's scans
    of them cost every launch ~1.5 ms (13 collections; one of them, at the 111th module, 0.9 ms).
    Frozen, they are never scanned again, nor their pages copied by a forked child to be scanned."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def _main(args: list[str]) -> int:
    flags = {flag for flag in args if flag in FLAGS}
    priority = None
    if "--queue" in flags:  # without it, `--priority` overrides a config key `priority` (as in 0.2.1)
        args, priority = _take_priority(args)
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
        _refuse_priority_without_queue(config_file, tokens)
        raise
    if priority is not None and "priority" in resolved.raw:
        console.warning(f"--priority {priority} orders the queue; the config's key `priority` keeps its value")
    sweeping = isinstance(resolved.raw.get("__sweep__"), dict)
    if sweeping:
        from expyrun.sweep.references import point_only
    for message in resolved.warnings:
        if not (sweeping and point_only(message)):  # resolved per point
            console.warning(message)

    launch_spec, sweep, spec = _check(resolved, config_file)
    _startup_over()
    if "--queue" in flags and not flags & {"--dry-run", "--explain"}:
        from expyrun.queue.enqueue import enqueue

        return enqueue(resolved, launch_spec, sweep, spec, args, flags, priority or 0)
    if launch_spec.launcher == "slurm" and "--explain" not in flags:
        from expyrun.execute.slurm_submit import submit

        if spec is not None:
            _check_study_on_slurm(resolved, spec, launch_spec)
        return submit(resolved, launch_spec, sweep, spec, args, flags)
    if launch_spec.launcher == "ray" and not flags & {"--explain", "--dry-run"}:
        from expyrun.execute import ray_submit

        if spec is not None:
            _check_study_on_slurm(resolved, spec, launch_spec)  # (the same shared-storage rules for Ray tasks)
        return ray_submit.submit(resolved, launch_spec, sweep, spec, args, flags)
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
    from expyrun.campaign.single import launch
    from expyrun.run.prepare import run_base

    debug = "--debug" in flags
    body, fields, after = None, None, None
    if spec is not None:
        from expyrun.tune.driver import Driver

        driver = Driver(resolved, spec, run_base(resolved, debug), sys.stderr.isatty(), launch_spec)
        body, after = driver.run, driver.settle  # settle: what a study process that died left running
        fields = {"study": spec.study_name}
    gpus = launch_spec.gpus if spec is None else None  # a study gives each trial worker its own
    return launch(resolved, debug, args, Path(config_file), body, fields, gpus, needed="--needed" in flags, after=after)


def _check_flags(rest: list[str]) -> list[tuple[str, str]]:
    """Refuse a misspelt flag (`--dryrun`) or an option with no value, before anything is read.

    Every `--x` that is not a flag is an override, so a misspelt flag used to take the next
    argument as its value or end with "missing value". An option followed by nothing or by
    another option (`--dryrun --lr 1`) has no value: a flag-like one is named as the flag it is
    close to. Returns the flag-like options that do have a value (`--dryrun x`): they are refused
    only if the config has no such key (`_refuse_misspelt_flags`).
    """
    if len(rest) < 2 and not (rest and rest[0].startswith("-")):
        return []  # the config alone: nothing to check, and the suggestions module is not imported
    from expyrun.commands.suggest import misspelt

    suspects: list[tuple[str, str]] = []
    position = 1  # rest[0] is the config; an option there is refused (`expyrun --dryrun cfg.yml`)
    first_flag = misspelt(rest[0], FLAGS) if rest and rest[0].startswith("-") else None
    if first_flag is not None:
        raise UsageError(f"unknown flag `{rest[0]}`", f"did you mean `{first_flag}`?")
    while position < len(rest):
        token = rest[position]
        flag = None if token.startswith("--+") or "=" in token else misspelt(token, FLAGS)
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


def _take_priority(args: list[str]) -> tuple[list[str], int | None]:
    """`--priority N` (or `--priority=N`) taken out of the arguments: it orders queued runs (`--queue`),
    it is no config key."""
    for position, token in enumerate(args):
        if token == "--priority" or token.startswith("--priority="):
            following = args[position + 1] if position + 1 < len(args) else ""
            value = token.partition("=")[2] if "=" in token else following
            if not value:
                raise UsageError("--priority: missing value", "expyrun CONFIG --queue --priority N (higher first)")
            from expyrun.queue.store import check_priority

            rest = args[:position] + args[position + (1 if "=" in token else 2) :]
            return rest, check_priority(value)
    return args, None


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


def _refuse_priority_without_queue(config_file: str, tokens: list[str]) -> None:
    """`--priority N` without `--queue` is an override of the config's key `priority` (a 0.2.1
    config may have one); when the config has no such key, it was meant for the queue."""
    if not any(token == "--priority" or token.startswith("--priority=") for token in tokens):
        return
    from expyrun.config.inheritance import load_config

    try:
        data = load_config(config_file, Path.cwd()).data
    except ExpyrunError:  # the config's own error is the one to show
        return
    if "priority" not in data:
        raise UsageError(
            f"--priority without --queue, and {config_file} has no key `priority` to override",
            "--priority orders queued runs: expyrun CONFIG --queue --priority N",
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


def _check_study_on_slurm(resolved: ResolvedConfig, spec: StudySpec, launch_spec: LaunchSpec) -> None:
    """A study whose jobs run on Slurm nodes: the driver's own checks, and a storage every node can
    reach (refused before anything is submitted)."""
    import re

    from expyrun.run.prepare import run_base
    from expyrun.tune.driver import Driver
    from expyrun.tune.spec import sqlite_path

    Driver(resolved, spec, run_base(resolved, False), False, launch_spec)  # its own checks (exit 2)
    storage = spec.storage or ""
    what = "Ray task" if launch_spec.launcher == "ray" else "Slurm job"  # (Ray's study workers: the same rules)
    if spec.is_sqlite and sqlite_path(storage) is None:
        raise ConfigError(
            f"`__optuna__.storage`: {storage} is in memory: the study's {what}s cannot share it",
            "use the default journal (in the output folder, on a file system the nodes share) or a database URL",
        )
    if spec.is_sqlite and launch_spec.workers > 1:
        console.warning(f"`__optuna__.storage` {storage}: several {what}s writing one SQLite file over a "
                        f"network file system is fragile; prefer the default journal or PostgreSQL")  # fmt: skip
    if re.search(r"@(localhost|127\.0\.0\.1|\[::1\])[:/]", storage) or "host=localhost" in storage:
        console.warning(f"`__optuna__.storage` names localhost: each {what} reaches its own node's localhost")


def _sweep(
    resolved: ResolvedConfig, sweep: SweepSpec, launch_spec: LaunchSpec, args: list[str], flags: set[str]
) -> int:
    """A config with `__sweep__`: print its points (`--dry-run`), explain it, or run them all."""
    from expyrun.campaign.sweep import run_sweep
    from expyrun.sweep.run import DRY_RUN_POINTS, describe_points, point_config

    cwd = Path.cwd()
    if "--explain" in flags:
        from expyrun.config.explain import explain

        first = point_config(resolved, next(sweep.points()), cwd)
        sys.stderr.write(f"# point 0 of {sweep.size}; keys marked `sweep` take each point's value\n")
        sys.stderr.write(explain(first))
    if "--dry-run" in flags or "--explain" in flags:
        from expyrun.config.dump import dump_yaml

        points = list(describe_points(resolved, sweep, cwd, DRY_RUN_POINTS))
        listed = {"sweep": sweep.name, "size": sweep.size, "points": points}
        if sweep.size > len(points):  # a million points are not printed: the first ones, and how many more
            listed["not_listed"] = sweep.size - len(points)
        sys.stdout.write(dump_yaml(listed))
        return 0
    return run_sweep(resolved, sweep, launch_spec, args, "--debug" in flags, "--needed" in flags)
