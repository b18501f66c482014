"""A process expyrun starts hears it when its parent dies, even by SIGKILL.

A `workers: N` command supervises N launches; a study process supervises its trial workers. A
SIGKILL of the supervisor runs no code of its own, so it cannot stop what it started: those went
on unseen, with their trials `running` in the storage. On Linux the kernel sends the child a
signal of our choosing when its parent dies (`prctl(PR_SET_PDEATHSIG)`); SIGTERM makes a launch
or a trial worker stop as it does for any SIGTERM (trials failed, recorded, queued again).
Elsewhere nothing is set up and the next launch reclaims what was left (expyrun/tune/reclaim.py).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def signal_on_parent_death(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that makes the child receive `signum` when this
    process (the parent) dies; None where the kernel cannot do it. Looked up here, before the
    fork: the child only calls prctl and compares its parent's pid (no import, no allocation)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signum)

    return arm


def stop_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Called by the child itself at its start (a trial worker: its parent, the study process,
    has other threads, where a `preexec_fn` is unsafe): receive `signum` when `parent` dies."""
    prctl = _prctl()
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signum)
