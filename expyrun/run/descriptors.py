"""Closing what a forked process inherited: the shared tee and the run children it forks.

Why a module of its own: both `run/capture.py` (the tee) and `run/child.py` (a run child the tee
forks) need it, and the tee module already imports the child module; here neither imports the other
for it.
"""

from __future__ import annotations

import contextlib
import os


def close_all_but(keep: set[int]) -> None:
    """In a forked process (the tee, a run child the tee forked): close every descriptor inherited but
    `keep`, so none holds another run's pipes or logs, or the tee's socket and report pipe."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
