"""A run's traceback as plain Python would print it: from the user's first frame, not expyrun's.

Why: `python train.py` shows the frames of the user's code only; an entry point called through
expyrun would also show the frames that called it (the run child's, a trial worker's, the
entry-point caller's: two for a run, five for a trial). They say nothing to the user and make
every failure look like expyrun's. Only the leading frames inside the expyrun package are left
out; an exception raised inside expyrun itself (every frame is expyrun's) is printed whole, and a
chained exception's own traceback is printed as Python prints it.
"""

from __future__ import annotations

import os
import sys

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def print_user_traceback() -> None:
    """Print the exception being handled on stderr, its leading expyrun frames left out."""
    import traceback

    error = sys.exc_info()[1]
    if error is None:
        return
    first = error.__traceback__
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        first = first.tb_next
    traceback.print_exception(type(error), error, first if first is not None else error.__traceback__)
    sys.stderr.flush()
