"""The command line: parses argv, dispatches, and is the only place that prints errors and exits.

A way in: argv -> the command table (`COMMANDS`) -> one module of `expyrun/commands/`; a first
argument that names no command is a config to launch (`commands/launch.py`). The other way in is
`python -m expyrun.node FOLDER` (a prepared run folder, on a cluster node).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from expyrun import console
from expyrun.errors import ExpyrunError, UsageError

HELP = ("-h", "--help")

USAGE = """\
usage: expyrun CONFIG [--debug] [--dry-run] [--explain] [--needed] [--KEY VALUE | --KEY=VALUE | --+NEW.KEY VALUE]...
       expyrun list [DIR] [--json] [--where EXPR]... [--sort [-]KEY] [--group-by KEY] [--columns K,...]
                    [--metrics M,...] [--status S] [--tag T] [--top N] [--format table|csv|json|jsonl]  (alias: ls)
       expyrun show RUN
       expyrun diff RUN_A RUN_B [--code]
       expyrun tag RUN... +TAG -TAG
       expyrun note RUN TEXT [--append]
       expyrun env RUN [--venv PATH] [--check]
       expyrun dashboard STUDY_RUN [--port P] [--allow-edits]
       expyrun ui [DIR] [--port P]
       expyrun resume RUN|SWEEP
       expyrun verify RUN [--rtol R] [--atol A]
       expyrun CONFIG --queue [--priority N]
       expyrun worker [--jobs N] [--gpus auto|0,1] [--once]
       expyrun queue [list] | cancel RUN... | clear
       expyrun --version | -h | --help

Run the entry point named in CONFIG's __run__ section in a new run folder
{__output_dir__}/{__name__}/exp.{i}/ holding everything needed to reproduce it.

options:
  --debug        run under {__output_dir__}/DEBUG/, from __code__, without snapshot or freeze
  --dry-run      resolve and validate everything, print the resolved config as YAML, create nothing
  --explain      print every leaf key, its value and where it came from (implies --dry-run)
  --needed       skip a run (or sweep point) already completed with the same config and code; say
                 which run it reuses
  --queue        prepare the run (every sweep point, the study's workers) and add it to the machine's
                 queue ($EXPYRUN_QUEUE, default ~/.expyrun/queue) for `expyrun worker`; --priority N
                 (default 0): higher first, then first in, first out
  --a.b VALUE    override a key (converted to the type of the value it replaces)
  --+a.b VALUE   add a new key on purpose (VALUE read as YAML)

commands:
  list   every run below DIR: status (died when its process is gone), start, duration, commit,
         result, and the config values that differ between runs of the same name
         (--where 'KEY OP VALUE', OP one of == != < <= > >= ~; KEY a dotted config key, name, status,
         result[.NAME], tags, started, duration, metric.NAME[.min|.max])
  show   a run's metadata, resolved config and last log lines
  diff   config keys changed/added/removed, requirement changes and commit change between two runs
  tag    add (+TAG) and remove (-TAG) tags of runs (annotations.json)
  note   set a run's note, or add a line to it (--append)
  env    compare a run's frozen requirements with this interpreter (--check, exit 1 on differences)
         or create/sync a virtual environment matching them (--venv PATH, with pip-tools)
  dashboard  serve optuna-dashboard for a study folder's study on 127.0.0.1 (port 8080 or the next
         free one) until Ctrl-C, read-only unless --allow-edits (pip install 'expyrun[dashboard]')
  ui     the runs viewer: a read-only web page on 127.0.0.1 (port 8080 or the next free one) over
         the runs below DIR: table, curves, texts, figures, logs (pip install 'expyrun[ui]')
  resume execute an interrupted, failed or died run again in its own folder (attempt + 1,
         EXPYRUN_ATTEMPT), or a sweep's unfinished and pending points in its sweep folder
  verify rerun a run's config.yml from its snapshot in an environment matching its frozen
         requirements into RUN/verify.{k}/ and compare result and metrics (exit 1: it differs)
  worker execute queued runs (priority, then first in, first out), --jobs at a time, each GPU id
         leased machine-wide, until Ctrl-C (its runs go back to the queue) or, with --once, until
         the queue is empty
  queue  list queued and executing runs; cancel RUN... or clear removes queued ones (interrupted)

environment:
  EXPYRUN_TRACEBACK=1   show Python tracebacks of expyrun's own errors
  EXPYRUN_QUEUE         the queue folder (default ~/.expyrun/queue)
  EXPYRUN_GPU_LEASES    the GPU lease folder (default ~/.expyrun/gpu-leases/HOST)
"""


def main(argv: list[str] | None = None) -> int:
    """The program; with `argv` None (the real command line) the process ends here.

    Ending with `os._exit` once stdout and stderr are flushed spares the interpreter's teardown
    of every imported module (several milliseconds of each launch): nothing expyrun holds needs
    finalising, and the run's own processes have ended or been left on purpose.
    """
    if argv is None:
        _open_closed_streams()
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is not None:
        return code
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be shown
            stream.flush()
    os._exit(code)


def _open_closed_streams() -> None:
    """A standard stream the caller closed (`expyrun c.yml >&-`) becomes /dev/null, so that nothing
    expyrun or the run opens later takes its number and receives what is meant for that stream, and
    Python's stream object (None when its fd was closed at startup) can be written and flushed."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (the process's own stream)


def _main(args: list[str]) -> int:
    try:
        return _dispatch(args)
    except ExpyrunError as error:
        _traceback_on_request()
        console.error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        import signal

        from expyrun.run.status import SIGNAL_EXIT

        return SIGNAL_EXIT[signal.SIGINT]
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
        return COMMANDS[first](args[1:])
    _refuse_misspelt_command(first)
    if any(arg in HELP for arg in args):  # `expyrun cfg.yml --help` asks for help, not to set a key `help`
        sys.stdout.write(USAGE)
        return 0
    if first == "--version":
        from expyrun import __version__

        sys.stdout.write(f"expyrun {__version__}\n")
        return 0
    from expyrun.commands import launch

    return launch.main(args)


def _list(args: list[str]) -> int:
    from expyrun.commands import list as command

    return command.main(args)


def _show(args: list[str]) -> int:
    from expyrun.commands import show

    return show.main(args)


def _diff(args: list[str]) -> int:
    from expyrun.commands import diff

    return diff.main(args)


def _env(args: list[str]) -> int:
    from expyrun.commands import env

    return env.main(args)


def _dashboard(args: list[str]) -> int:
    from expyrun.commands import dashboard

    return dashboard.main(args)


def _resume(args: list[str]) -> int:
    from expyrun.commands import resume

    return resume.main(args)


def _verify(args: list[str]) -> int:
    from expyrun.commands import verify

    return verify.main(args)


def _ui(args: list[str]) -> int:
    from expyrun.commands import ui

    return ui.main(args)


def _worker(args: list[str]) -> int:
    from expyrun.commands import worker

    return worker.main(args)


def _queue(args: list[str]) -> int:
    from expyrun.commands import queue

    return queue.main(args)


def _tag(args: list[str]) -> int:
    from expyrun.commands import tag

    return tag.main(args)


def _note(args: list[str]) -> int:
    from expyrun.commands import note

    return note.main(args)


# The command table: a word before anything else names a command (unless a file has that name);
# anything else is a config to launch (`commands/launch.py`). Each handler imports its module only
# when called, so a launch never pays for the browsing commands (nor they for the launch path).
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "list": _list,
    "ls": _list,
    "show": _show,
    "diff": _diff,
    "env": _env,
    "dashboard": _dashboard,
    "ui": _ui,
    "tag": _tag,
    "note": _note,
    "worker": _worker,
    "queue": _queue,
    "resume": _resume,
    "verify": _verify,
}


def _refuse_misspelt_command(first: str) -> None:
    """`expyrun lst`: a word close to a command and naming no file is a misspelt command.

    Without this it read as a config file name and got "no such config file".
    """
    if first.startswith("-") or "." in first or "/" in first or os.path.lexists(first):
        return
    from expyrun.commands.suggest import misspelt

    command = misspelt(first, tuple(COMMANDS))
    if command is not None:
        raise UsageError(f"`{first}`: no such command or config file", f"did you mean `expyrun {command}`?")
