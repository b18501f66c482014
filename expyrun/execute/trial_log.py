"""A task's output (a trial, a batch of trials, a sweep point on a reused worker) through the plain
run's tee: written to the task's `outputs.log` and shown on this process's own fds 1 and 2.

A forked run's fds 1 and 2 are pipes read by a tee process (`run/capture.py`) that writes each chunk
to the run's log, then to expyrun's stdout or stderr (one pipe for both when they go to the same
place, so the order of all writes is kept), keeps copying after a SIGKILL of the writer, and, when
the disk is full, stops writing the log (`log_error`) while the run and the terminal go on. A task
runs in a process that outlives it (a reused worker, or the study process for inline trials), so
`TaskOutput` forks that same tee once per such process, at its first task, showing on the fds 1 and
2 the process had then: a worker's are the study's (the study is a run: they reach its log and
expyrun's streams) or, under a sweep's `reuse_workers`, the launcher's own. Each task gets new pipes
from it, as a forked run does; the task's end waits until the tee says the log is complete (or
`LOG_GRACE_S`, as for a run: a process the task left may hold the pipes), so the task's record,
read from the log (`__metrics__`) or written after it, sees all of it.

Cost: per task a pipe or two, an `open` of the log, one `sendmsg` and one wait for the tee's report;
the tee's fork once per process. Measured with 50-trial studies whose trials print a line (CPU of
every process, alternately with the tree before, load ~1.5): 26-29 ms a trial either way, the
difference within the noise. Output costs by volume: it is copied twice (this tee, then the study's
run's) and written to the study's log too; a trial printing 500,000 lines (15 MB) takes 2.0-2.4 s of
CPU instead of 1.8-1.9 s, the same wall time.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path
from typing import IO

from expyrun.run.capture import LOG_FILE, Tee, TeeProcess
from expyrun.run.shutdown import flush_all

LOG_GRACE_S = 2.0  # as `execute/local.py`'s: after a task ended, how long its log may take to be complete


class TaskOutput:
    """The tee of one process that executes tasks one after another (or side by side, in threads).

    `begin`/`end` point this process's fds 1 and 2 at a task's pipes and back (one task at a time);
    `open`/`streams`/`wait` give a task its pipes without touching the fds (threads: Python-level
    output only, fd-level writes stay on this process's fds, see `inline_pool.py`). Not thread-safe:
    `open`, `wait` and `close` are called by one thread.
    """

    def __init__(self) -> None:
        self.tees = TeeProcess()  # forked at the first task
        self._saved: tuple[int, int] | None = None

    def open(self, run_dir: Path) -> Tee:
        """The task's pipes, handed to the tee with `run_dir`'s log (created). `__metrics__` patterns
        are not given: a trial's are matched in its log when it is recorded (`track.metrics.finish_fields`)."""
        return self.tees.open(run_dir / LOG_FILE)

    def begin(self, run_dir: Path) -> Tee:
        """Fds 1 and 2 of this process become the task's pipes (Python's and C's buffers flushed first,
        into what they were written for)."""
        flush_all()
        tee = self.open(run_dir)
        self._saved = os.dup(1), os.dup(2)  # non-inheritable duplicates
        os.dup2(tee.stdout, 1)
        os.dup2(tee.stderr, 2)
        tee.close_writers()
        return tee

    def end(self, tee: Tee) -> str | None:
        """Fds 1 and 2 back to what they were (buffers flushed into the task's pipes first), then
        `wait`: why the log could not be written, if so."""
        flush_all()
        if self._saved is not None:
            for fd, saved in zip((1, 2), self._saved, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
            self._saved = None
        return self.wait(tee)

    def wait(self, tee: Tee, deadline: float | None = None) -> str | None:
        """Until the tee copied everything the task wrote and every writer is gone, or `deadline`
        (`LOG_GRACE_S` from now by default) passed; why the log could not be written, if so."""
        deadline = time.monotonic() + LOG_GRACE_S if deadline is None else deadline
        while not tee.done:
            left = deadline - time.monotonic()
            if left <= 0 or self.tees.done_fd < 0:
                break
            with contextlib.suppress(InterruptedError):
                select.select([self.tees.done_fd], [], [], left)
            self.tees.collect()
        return tee.log_error

    def close(self) -> None:
        """No more tasks: the tee exits once the logs it copies are complete (not waited for)."""
        self.tees.close()


def streams(tee: Tee) -> tuple[IO[str], IO[str]]:
    """Line-buffered text streams writing to a task's pipes, for a task whose fds are not its own (a
    thread): one stream for both when they share one pipe, so the order of their writes is kept.
    Closing them closes the pipes' write ends."""

    def stream(fd: int) -> IO[str]:
        return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")

    out = stream(tee.stdout)
    return out, out if tee.stderr == tee.stdout else stream(tee.stderr)
