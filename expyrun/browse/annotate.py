"""`expyrun tag RUN... +a -b` and `expyrun note RUN TEXT [--append]`: the command-line side of
`track/annotations.py` (argument reading and checks), kept apart so the file's owner stays free of
argv, and here, above `reading/runs.py` whose check of a run folder it uses, so track/ imports nothing
above it.

Every RUN is checked to be a run folder before any is changed: a typo among twenty folders
changes none of them and says which one is wrong, in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from expyrun.errors import UsageError
from expyrun.track import annotations as store

TAG_USAGE = "usage: expyrun tag RUN... +TAG... -TAG..."
NOTE_USAGE = 'usage: expyrun note RUN "TEXT" [--append]'


def tag_command(args: list[str]) -> int:
    """Add (`+best`) and remove (`-baseline`) tags of every RUN given; prints each run's tags."""
    from expyrun.reading.runs import require_run

    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(TAG_USAGE + "\n")
        return 0
    edits = [arg for arg in args if arg[:1] in "+-" and len(arg) > 1]
    paths = [arg for arg in args if arg not in edits]
    if not paths or not edits:
        raise UsageError("expyrun tag: give at least one RUN and one +TAG or -TAG", TAG_USAGE)
    add = [store.check_tag(arg[1:]) for arg in edits if arg[0] == "+"]
    remove = [store.check_tag(arg[1:]) for arg in edits if arg[0] == "-"]
    runs = [require_run(path) for path in paths]
    for run_dir in runs:
        written = _edit(run_dir, store.retag(add, remove))
        sys.stderr.write(f"{run_dir}: {' '.join(written.tags) or '(no tags)'}\n")
    return 0


def note_command(args: list[str]) -> int:
    """Set the note of RUN to TEXT, or add TEXT as its last line (`--append`)."""
    from expyrun.reading.runs import require_run

    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(NOTE_USAGE + "\n")
        return 0
    append = "--append" in args
    rest = [arg for arg in args if arg != "--append"]
    unknown = [arg for arg in rest if arg.startswith("--")]
    if unknown:
        raise UsageError(f"expyrun note: unknown option `{unknown[0]}`", NOTE_USAGE)
    if len(rest) != 2:
        raise UsageError("expyrun note: give one RUN and one TEXT (quote a text with spaces)", NOTE_USAGE)
    run_dir: Path = require_run(rest[0])
    _edit(run_dir, store.renote(rest[1], append))
    return 0


def _edit(run_dir: Path, change: Callable[[store.Annotations], store.Annotations]) -> store.Annotations:
    """`store.edit`, with a folder that cannot be written (read-only, full) said in one line."""
    try:
        return store.edit(run_dir, change)
    except OSError as error:
        raise UsageError(f"{run_dir}: cannot write {store.ANNOTATIONS_FILE}: {error.strerror or error}") from None
