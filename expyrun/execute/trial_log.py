"""A trial's `outputs.log` written by the trial's own process, given up (not fatal) when the disk is full.

A plain run writes its log through a tee: when the disk fills, the tee stops writing the file, the
run goes on and its record says `log_error`. A trial in a worker process (or inline) has fds 1 and 2
pointed straight at its log, so a full disk made every `print` raise `OSError` in the trial, in the
code that reports the error, and in the worker itself, which died and took the driver with it. Here
the trial's Python streams write through `GuardedStreams`: the first write the disk refuses (ENOSPC,
EDQUOT, EFBIG) points fds 1 and 2 at /dev/null, keeps the error for the record and reports the
write done, so the trial goes on exactly as a plain run does. Writes made below Python (C code,
subprocesses) fail silently, as they would have anyway.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from typing import IO, Any

LOG_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def log_full_message(error: OSError) -> str:
    """The `log_error` of a log the disk refused, worded as a plain run's tee words it."""
    return f"outputs.log cannot be written ({error.strerror or error}); the run goes on"


class _GuardedFd(io.RawIOBase):
    """Writes to fd `fd`; a full disk hands the error to `owner` and pretends the write was made."""

    def __init__(self, fd: int, owner: GuardedStreams) -> None:
        super().__init__()
        self.fd = fd
        self.owner = owner

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        try:
            return os.write(self.fd, view)
        except OSError as error:
            if error.errno not in LOG_FULL_ERRNOS:
                raise
            self.owner.give_up(error)
            return len(view)


class GuardedStreams:
    """`sys.stdout`/`sys.stderr` for one trial whose fds 1 and 2 are its log (see the module's
    docstring); `install` replaces them, `restore` puts the previous ones back and returns the
    log's error, if any."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.saved: tuple[IO[str], IO[str]] | None = None

    def give_up(self, error: OSError) -> None:
        """The log is full: the rest of the trial's output goes nowhere, fds 1 and 2 included."""
        if self.error is None:
            self.error = log_full_message(error)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            os.dup2(null, 2)
        finally:
            os.close(null)

    def _stream(self, fd: int, like: IO[str]) -> IO[str]:
        buffered = io.BufferedWriter(_GuardedFd(fd, self))
        encoding = getattr(like, "encoding", None) or "utf-8"
        errors = getattr(like, "errors", None) or "backslashreplace"
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=True)

    def install(self) -> None:
        self.saved = (sys.stdout, sys.stderr)
        sys.stdout = self._stream(1, sys.stdout)
        sys.stderr = self._stream(2, sys.stderr)

    def restore(self) -> str | None:
        if self.saved is not None:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            sys.stdout, sys.stderr = self.saved
            self.saved = None
        return self.error


class GuardedFile(io.TextIOBase):
    """A trial's log opened as a text file (inline trials in threads): a full disk gives the log up
    (the rest of its text is dropped) and keeps the error, instead of raising in the trial."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        super().__init__()
        self.file: IO[str] | None = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        self.error: str | None = None

    def _guard(self, error: OSError) -> None:
        if error.errno not in LOG_FULL_ERRNOS:
            raise error
        self.error = self.error or log_full_message(error)
        file, self.file = self.file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def write(self, text: str) -> int:
        if self.file is not None:
            try:
                self.file.write(text)
            except OSError as error:
                self._guard(error)
        return len(text)

    def flush(self) -> None:
        if self.file is not None:
            try:
                self.file.flush()
            except OSError as error:
                self._guard(error)

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError as error:
                with contextlib.suppress(OSError):
                    self._guard(error)
            self.file = None
        super().close()
