"""The `__run__` keys of command runs and tool interpreters (SPEC 10), validated as plain values.

Checks that need the file system or another program (the command's program exists, templates
render, `__python__` is an interpreter) happen in `expyrun.run.command` before anything is created.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

from expyrun.config.tree import Path
from expyrun.errors import ConfigError


def command_options(
    run: dict[str, Any], where: Callable[[Path], str], cwd: FsPath
) -> tuple[tuple[str, ...] | None, tuple[str, ...], str | None, bool, FsPath | None]:
    """`(command, templates, result_file, ignore_exit_code, python)` of a resolved `__run__`."""

    def fail(key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{where(('__run__', key))}: `__run__.{key}` {message}", hint)

    command = None
    if "__command__" in run:
        value = run["__command__"]
        if isinstance(value, str):
            import shlex  # only for a command written as one string: an entry point's launch spares it

            try:
                value = shlex.split(value)
            except ValueError as error:
                raise fail("__command__", f"cannot be split like a shell would: {error}") from None
        if not isinstance(value, list) or any(isinstance(v, (dict, list)) or v is None for v in value):
            raise fail("__command__", f"must be a list of arguments or one string, got {value!r}")
        if not value or not str(value[0]):
            raise fail("__command__", "is empty", "name the program to run, e.g. [bash, train.sh]")
        command = tuple(str(v) for v in value)
    templates = run.get("__templates__") or []
    if isinstance(templates, str):
        templates = [templates]
    if not isinstance(templates, list) or not all(isinstance(t, str) and t for t in templates):
        raise fail("__templates__", f"must be a list of files or folders under `__code__`, got {templates!r}")
    result_file = run.get("__result__")
    if result_file is not None and (not isinstance(result_file, str) or not result_file):
        raise fail("__result__", f"must name a file the run writes in its folder, got {result_file!r}")
    if result_file is not None and (FsPath(result_file).is_absolute() or ".." in FsPath(result_file).parts):
        raise fail("__result__", f"{result_file!r} must be a path inside the run folder")
    ignore = run.get("__ignore_exit_code__", False)
    if not isinstance(ignore, bool):
        raise fail("__ignore_exit_code__", f"must be true or false, got {ignore!r}")
    python = run.get("__python__")
    if python is not None and (not isinstance(python, str) or not python):
        raise fail("__python__", f"must be an interpreter or a virtual environment folder, got {python!r}")
    interpreter = None
    if python is not None:
        interpreter = (cwd / FsPath(python).expanduser()).absolute()
        if interpreter.is_dir():
            interpreter = interpreter / "bin" / "python"
    return command, tuple(templates), result_file, ignore, interpreter


def metric_patterns(run: dict[str, Any], where: Callable[[Path], str]) -> tuple[str, ...]:
    """`__run__.__metrics__`: regular expressions with named groups, matched against every line the
    run prints (SPEC 11.1); each must compile and name at least one value besides `step`."""
    import re

    patterns = run.get("__metrics__") or []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ConfigError(
            f"{where(('__run__', '__metrics__'))}: `__run__.__metrics__` must be a list of regular expressions, "
            f"got {patterns!r}"
        )
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            raise ConfigError(
                f"{where(('__run__', '__metrics__'))}: `__run__.__metrics__`: {pattern!r} is not a regular "
                f"expression ({error})"
            ) from None
        if not set(compiled.groupindex) - {"step"}:
            raise ConfigError(
                f"{where(('__run__', '__metrics__'))}: `__run__.__metrics__`: {pattern!r} names no value",
                r"name each number with a group, e.g. 'loss=(?P<loss>\S+)'",
            )
    return tuple(patterns)
