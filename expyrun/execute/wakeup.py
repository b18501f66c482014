"""A wake-up pipe: a stop signal ends an executor's wait at once, not at the wait's timeout.

Why: Python runs a signal handler between bytecodes and then retries an interrupted `select`, so
a wait on the workers' pipes would sleep through Ctrl-C until its timeout. With the pipe's write
end as `signal.set_wakeup_fd`, the C-level handler writes the signal's number there and a `select`
that also watches the read end returns. The executors that wait on worker pipes (reused workers
for a sweep, a study's trial pools) each hold one, opened at their first wait (from the main
thread: `set_wakeup_fd` is refused elsewhere), drained after each wait and closed with them,
giving back the wake-up fd that was set before. Costs one pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal


class WakeupPipe:
    """One non-blocking pipe whose write end is the process's signal wake-up fd while it is open."""

    def __init__(self) -> None:
        self._fds: tuple[int, int] | None = None
        self._previous = -1

    def open(self) -> int:
        """The read end; the first call makes the pipe and sets it as the wake-up fd."""
        if self._fds is None:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._previous = signal.set_wakeup_fd(write)
            self._fds = (read, write)
        return self._fds[0]

    def drain(self) -> None:
        """Read what signals wrote, so the next wait does not end at once for an old signal."""
        if self._fds is not None:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._fds[0], 4096):
                    pass

    def close(self) -> None:
        """Give back the wake-up fd set before, and close the pipe (again: nothing)."""
        if self._fds is not None:
            signal.set_wakeup_fd(self._previous)
            for fd in self._fds:
                os.close(fd)
            self._fds = None
