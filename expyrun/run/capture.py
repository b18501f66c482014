"""Log capture at the file-descriptor level, by a tee process that outlives the run.

File descriptors 1 and 2 of the launcher become pipes read by a forked tee process in a
session of its own: everything written to them (print, logging, C code, child processes,
tracebacks, faulthandler) reaches `outputs.log` and the original stdout/stderr. The tee writes
each chunk to the log before the terminal and keeps reading until every writer is gone, so a
SIGKILL of the run (or of its whole process group) loses nothing that was written.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LOG_FILE = "outputs.log"


@dataclass
class Tee:
    pid: int
    saved_stdout: int
    saved_stderr: int

    def stop(self, grace_s: float = 2.0) -> None:
        """Give the launcher its own stdout/stderr back and let the tee drain and exit."""
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved_stdout, 1)
        os.dup2(self.saved_stderr, 2)
        os.close(self.saved_stdout)
        os.close(self.saved_stderr)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:  # a leftover grandchild may still hold the pipes
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.005)


def start_tee(log_path: Path) -> Tee:
    sys.stdout.flush()
    sys.stderr.flush()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.fork()
    if pid == 0:  # the tee
        code = 0
        try:
            os.setsid()  # out of the run's process group: signals to the group spare it
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.close(out_write)
            os.close(err_write)
            _pump({out_read: 1, err_read: 2}, log_fd)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(out_read)
    os.close(err_read)
    os.close(log_fd)
    saved = Tee(pid, os.dup(1), os.dup(2))
    os.dup2(out_write, 1)
    os.dup2(err_write, 2)
    os.close(out_write)
    os.close(err_write)
    return saved


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _pump(sources: dict[int, int], log_fd: int) -> None:
    poller = select.poll()
    for fd in sources:
        poller.register(fd, select.POLLIN)
    terminal_ok = dict.fromkeys(sources.values(), True)
    while sources:
        for fd, _ in poller.poll():
            data = os.read(fd, 1 << 16)
            if not data:
                poller.unregister(fd)
                del sources[fd]
                continue
            _write_all(log_fd, data)
            target = sources[fd]
            if terminal_ok[target]:
                try:
                    _write_all(target, data)
                except OSError as error:  # the terminal went away: keep logging
                    if error.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
                        raise
                    terminal_ok[target] = False
