"""`expyrun tag RUN... +TAG -TAG`: add and remove tags of runs (SPEC 12.2; `browse/annotate.py`)."""

from __future__ import annotations


def main(args: list[str]) -> int:
    """Tag every RUN given; `+a -b` are edits, not options, so argparse is not used."""
    from expyrun.browse.annotate import tag_command

    return tag_command(args)
