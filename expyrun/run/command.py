"""Command runs, templates, result files and tool interpreters (SPEC 10).

A command run's child process `exec`s the program: it *is* the run (its process group, its exit
status), with the same tee, signals and record as a Python run. A `__main__` entry point with
`__python__` is run the same way by that interpreter with a small bootstrap (`bootstrap.py`, sent
as `-c` code, so expyrun need not be installed there); the config reaches it through an anonymous
memory file and its result comes back on the run's result pipe.
"""

# No `from __future__ import annotations` here: typing.NamedTuple turns string annotations into
# ForwardRefs, compiling each (~15 us a field, at every launch); these evaluate as written.
import json
import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

from expyrun.config import ResolvedConfig, RunSection
from expyrun.errors import ConfigError
from expyrun.run.outcome import Outcome
from expyrun.run.status import Status


class ExecSpec(NamedTuple):
    """What the run child `exec`s instead of calling a Python function."""

    argv: tuple[str, ...]
    environment: dict[str, str]
    payload: bytes | None = None  # given to the program as the fd in EXPYRUN_PAYLOAD_FD (a bootstrap's input)
    reports: bool = False  # the program writes its result on the fd in EXPYRUN_RESULT_FD


def check_run(resolved: ResolvedConfig) -> None:
    """Everything a command run or a tool interpreter needs, checked before anything is created."""
    run = resolved.run
    if run.python is not None:
        interpreter_info(run.python)
    if run.is_command:
        if not run.code.is_dir():
            raise ConfigError(f"`__run__.__code__`: folder {run.code} does not exist")
        _check_program(run)
    if run.templates:
        from expyrun.run.templates import render_templates

        render_templates(resolved, run.code, warn=True, snapshotted=run.is_command)


def _check_program(run: RunSection) -> None:
    import shutil

    assert run.command is not None
    program = run.command[0]
    if "/" not in program:
        if shutil.which(program) is None:
            raise ConfigError(f"`__run__.__command__`: program `{program}` not found on PATH")
        return
    path = Path(program)
    candidates = [path] if path.is_absolute() else [run.code.parent / path, run.code / path, Path.cwd() / path]
    if not any(candidate.is_file() for candidate in candidates):
        raise ConfigError(f"`__run__.__command__`: program `{program}` not found")
    if not any(os.access(candidate, os.X_OK) for candidate in candidates if candidate.is_file()):
        raise ConfigError(
            f"`__run__.__command__`: `{program}` is not executable", "chmod +x it, or run it through its interpreter"
        )


def interpreter_info(python: Path) -> dict[str, str]:
    """`version` and `executable` of the interpreter `__python__` names (Python >= 3.9), or a ConfigError.

    It must prove it runs Python code: it answers the SHA-256 of a random token with `hashlib`, which
    a script printing fixed lines cannot. Each answer is one line (an executable's path may hold spaces).
    """
    import secrets
    import subprocess
    from hashlib import sha256

    token = secrets.token_hex(8)
    probe = (
        "import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest()); "
        "print(sys.version_info >= (3, 9)); print(sys.version.split()[0]); print(sys.executable)"
    )
    try:
        answer = subprocess.run(
            [str(python), "-c", probe, token], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"`__run__.__python__`: {python} is not a Python interpreter ({error})") from None
    lines = answer.stdout.splitlines()
    if answer.returncode != 0 or len(lines) != 4 or lines[0] != sha256(token.encode()).hexdigest():
        raise ConfigError(
            f"`__run__.__python__`: {python} is not a Python interpreter",
            "name a python executable or a virtual environment folder",
        )
    if lines[1] != "True":
        raise ConfigError(f"`__run__.__python__`: {python} is Python {lines[2]}; expyrun needs 3.9 or later")
    return {"version": lines[2], "executable": lines[3]}


def exec_spec(resolved: ResolvedConfig, run_dir: Path, import_root: Path) -> ExecSpec:
    """What the run child executes for a command run or a `__python__` entry point."""
    run = resolved.run
    environment = {"EXPYRUN_CONFIG": str(run_dir / "config.yml")}
    if run.command is not None:
        return ExecSpec(run.command, environment)
    from expyrun.run import bootstrap

    assert run.python is not None
    entry = {
        "import_root": str(import_root), "module": run.module, "function": run.function, "name": run.name,
        "config": resolved.user_config(),
    }  # fmt: skip
    payload = json.dumps(entry, default=str).encode()
    return ExecSpec((str(run.python), "-c", bootstrap.SOURCE), environment, payload, reports=True)


def complete_outcome(outcome: Outcome, run: RunSection, run_dir: Path) -> Outcome:
    """A command run's outcome: its exit status (ignored on request) and its `__result__` file."""
    outcome = _exit_status(outcome, run)
    if run.result_file is None or outcome.status != Status.COMPLETED:
        return outcome
    try:
        outcome.result = read_result(run_dir / run.result_file)
    except ValueError as error:
        return Outcome(
            Status.FAILED, 1, exception={"type": "ResultFile", "message": str(error)}, log_error=outcome.log_error,
            returncode=outcome.returncode,
        )  # fmt: skip
    return outcome


def _exit_status(outcome: Outcome, run: RunSection) -> Outcome:
    """Only expyrun's own stop interrupts a command run: a program that exits 130 or 143 by itself
    failed with that code, which `__ignore_exit_code__` ignores like any other. A program killed by
    a signal (SIGKILL, SIGSEGV, SIGABRT, ...) did not end: that is never ignored."""
    code = outcome.returncode
    if code is None or outcome.stopped:
        return outcome
    if outcome.status == Status.INTERRUPTED:
        outcome = Outcome(
            Status.FAILED, 1, exception={"type": "Exit", "message": f"the run exited with code {code}"},
            log_error=outcome.log_error, returncode=code,
        )  # fmt: skip
    if run.ignore_exit_code and outcome.status == Status.FAILED and code > 0:
        return Outcome(Status.COMPLETED, 0, log_error=outcome.log_error, returncode=code)
    return outcome


MAX_RESULT_MB = 16  # a result is a number, a list or a mapping of them: more is not a result
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket"}  # fmt: skip


def read_result(path: Path) -> Any:
    """A result file: JSON (a number, a list, a mapping) or one bare number.

    The program chose what the path is: it is read only if it is a regular file (a FIFO would block
    for ever, `/dev/zero` never ends), at most `MAX_RESULT_MB`, and an integer too long to be a
    number is refused rather than read as infinity."""
    text = _result_text(path)
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except _TooManyDigits as error:
        raise ValueError(f"the result file {path.name} holds {error}") from None
    except ValueError:
        if text.lstrip("+-").isdigit():  # an integer JSON refused: too long for Python to read
            raise ValueError(f"the result file {path.name} holds an integer of {len(text)} digits") from None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"the result file {path.name} holds neither JSON nor a number: {text[:80]!r}") from None
    if isinstance(value, str):
        raise ValueError(f"the result file {path.name} holds a string, not a number, list or mapping: {value[:80]!r}")
    return value


def _result_text(path: Path) -> str:
    """The text of a regular file of at most `MAX_RESULT_MB`; a ValueError saying what is wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks on a FIFO
    except FileNotFoundError:
        raise ValueError(f"the result file {path.name} was not written") from None
    except OSError as error:
        raise ValueError(f"the result file {path.name} cannot be read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as reader:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            raise ValueError(f"the result file {path.name} is {_KINDS.get(kind, 'not a file')}, not a regular file")
        data = reader.read(MAX_RESULT_MB * 1024 * 1024 + 1)
    if len(data) > MAX_RESULT_MB * 1024 * 1024:
        raise ValueError(f"the result file {path.name} is larger than {MAX_RESULT_MB} MB")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"the result file {path.name} is not UTF-8 text") from None


class _TooManyDigits(ValueError):
    """An integer in a result too long to be a number anything would compare."""


MAX_INT_DIGITS = 4300  # Python's own limit for reading an integer from text


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _TooManyDigits(f"an integer of {digits} digits")
    return int(text)


def run_in_place(run: RunSection, run_dir: Path) -> Any:
    """Run a command run's program in `run_dir` and wait for it (a study trial in a reused worker,
    whose stdout and stderr are already the trial's log); returns its `__result__` value."""
    import subprocess

    assert run.command is not None
    environment = {**os.environ, "EXPYRUN_RUN_DIR": str(run_dir), "EXPYRUN_CONFIG": str(run_dir / "config.yml")}
    completed = subprocess.run(list(run.command), cwd=run_dir, env=environment, check=False)
    if completed.returncode < 0 or (completed.returncode != 0 and not run.ignore_exit_code):
        raise RuntimeError(f"the command exited with status {completed.returncode}")
    return None if run.result_file is None else read_result(run_dir / run.result_file)
