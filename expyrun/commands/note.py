"""`expyrun note RUN TEXT [--append]`: set or extend a run's note (SPEC 12.2; `browse/annotate.py`)."""

from __future__ import annotations


def main(args: list[str]) -> int:
    """Set the note of RUN, or add a line to it."""
    from expyrun.browse.annotate import note_command

    return note_command(args)
