"""Log capture at the file-descriptor level, by a tee process that outlives the run.

The run child's file descriptors 1 and 2 are pipes read by a forked tee process in a session of
its own: everything written to them (print, logging, C code, child processes, tracebacks,
faulthandler) reaches `outputs.log` and the original stdout/stderr. The tee writes each chunk to
the log before the terminal and keeps reading until every writer is gone, so a SIGKILL of the run
(or of its whole process group) loses nothing that was written. The launcher's own descriptors
are left alone: its messages go to the terminal, not into the run's log.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

LOG_FILE = "outputs.log"
_PARENT_CHECK_MS = 200


class Tee:
    """A running tee: the run's output pipes (`stdout`, `stderr`; one pipe when both go to the same
    place, so the order of all writes is kept) and the control and report channels."""

    def __init__(self, pid: int, stdout: int, stderr: int, control: int, report: int) -> None:
        self.pid = pid
        self.stdout = stdout  # write end for the run's fd 1
        self.stderr = stderr  # write end for the run's fd 2 (the same pipe as stdout when shared)
        self.control = control
        self.report = report  # the tee's one message back: why the log could not be written, if so
        self.log_error: str | None = None
        self.exited = False

    def watch(self, run_pgid: int) -> None:
        """Tell the tee the run's process group, which it kills if the launcher dies (SIGKILL). A run
        that already ended (a program killed at once) may have let the tee exit: nothing to watch."""
        with contextlib.suppress(BrokenPipeError):
            os.write(self.control, f"{run_pgid}\n".encode())

    def close_writers(self) -> None:
        """The run child holds its own copies of the write ends: the launcher lets go of them."""
        for fd in {self.stdout, self.stderr}:
            with contextlib.suppress(OSError):
                os.close(fd)

    def stop(self, grace_s: float = 2.0) -> None:
        """Let the tee drain and exit; a leftover process that left the run's group may still hold
        the pipes, in which case the tee goes on copying in the background and we stop waiting.

        The tee's end of the report pipe closes when it exits: that EOF is what we wait for.
        """
        with contextlib.suppress(OSError):
            os.close(self.control)
        report, exited = b"", False
        deadline = time.monotonic() + grace_s
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.report], [], [], left)[0]:
                break
            chunk = os.read(self.report, 4096)
            if not chunk:
                exited = True
                break
            report += chunk
        os.close(self.report)
        self.log_error = report.decode(errors="replace").strip() or None
        self.exited = exited

    def reap(self) -> bool:
        """Collect the ended tee (it takes a few milliseconds to exit after closing its pipes, which
        nobody needs to wait for); whether it is gone."""
        try:
            return os.waitpid(self.pid, os.WNOHANG) != (0, 0)
        except ChildProcessError:
            return True


def same_destination(fd_a: int, fd_b: int) -> bool:
    """Whether two descriptors write to the same file, pipe or terminal."""
    try:
        a, b = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)


def start_tee(log_path: Path, stdout: int = 1, stderr: int = 2, metrics: tuple[str, ...] = ()) -> Tee:
    """Fork a tee that copies what the run writes to `log_path` and to `stdout`/`stderr`.

    When `stdout` and `stderr` are the same terminal or file, the run gets one pipe for both: its
    writes reach the log and the terminal in exactly the order they were made. `metrics`: the
    run's `__metrics__` patterns, matched by the tee against every line (`track.metrics.LineSink`,
    which also times the lines a program appends to `$EXPYRUN_METRICS` without a `time`).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    shared = same_destination(stdout, stderr)
    out_read, out_write = os.pipe()
    err_read, err_write = (out_read, out_write) if shared else os.pipe()
    control_read, control_write = os.pipe()
    report_read, report_write = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    launcher = os.getpid()
    pid = os.fork()
    if pid == 0:  # the tee
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            os.setsid()  # out of the run's process group: signals to the group spare it
            for fd in {out_write, err_write, control_write, report_read}:
                os.close(fd)
            sources = {out_read: stdout} if shared else {out_read: stdout, err_read: stderr}
            _pump(sources, log_fd, control_read, launcher, report_write, _MetricsSink(str(log_path.parent), metrics))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    for fd in {out_read, err_read, log_fd, control_read, report_write}:
        os.close(fd)
    return Tee(pid, out_write, err_write, control_write, report_read)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Orphaned:
    """The launcher died (SIGKILL): stop the run's process group, then drain what it wrote.

    The tee notices by its parent changing (it is re-parented), checked at least every
    `_PARENT_CHECK_S` while it copies.
    """

    def __init__(self, launcher: int) -> None:
        self.launcher = launcher
        self.run_pgid: int | None = None
        self.launcher_dead = False
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.check()

    def check(self) -> None:
        if not self.launcher_dead and os.getppid() != self.launcher:
            self.launcher_dead = True
        self.stop_run()

    def stop_run(self) -> None:
        if self.launcher_dead and self.run_pgid is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.run_pgid, signal.SIGKILL)


def _pump(sources: dict[int, int], log_fd: int, control: int, launcher: int, report: int, sink: Any = None) -> None:
    """Copy each chunk to the log, then to the terminal, until every writer is gone.

    A log that cannot be written (disk full) never stops the copy to the terminal: the tee says
    why once on stderr and through `report`, and the run goes on. `sink`: what turns output lines
    into metrics (`__metrics__`), fed each chunk after the log and closed at the end.
    """
    orphaned = _Orphaned(launcher)
    log_ok = True
    poller = select.poll()
    for fd in (*sources, control):
        poller.register(fd, select.POLLIN)
    terminal_ok = dict.fromkeys(sources.values(), True)
    stderr = list(sources.values())[-1]
    while sources:
        ready = poller.poll(_PARENT_CHECK_MS)
        orphaned.check()
        if sink is not None:
            _feed(sink, b"")
        for fd, _ in ready:
            data = os.read(fd, 1 << 16)
            if fd == control:
                if not data:
                    poller.unregister(fd)
                elif data.strip():
                    orphaned.run_pgid = int(data.split()[0])
                    orphaned.stop_run()
                continue
            if not data:
                poller.unregister(fd)
                del sources[fd]
                continue
            if log_ok:
                try:
                    _write_all(log_fd, data)
                except OSError as error:
                    log_ok = False
                    message = f"{LOG_FILE} cannot be written ({error.strerror}); the run goes on"
                    with contextlib.suppress(OSError):
                        os.write(report, message.encode())
                        _write_all(stderr, f"expyrun: warning: {message}\n".encode())
            if sink is not None:
                _feed(sink, data)
            target = sources[fd]
            if terminal_ok[target]:
                try:
                    _write_all(target, data)
                except OSError as error:  # the terminal went away: keep logging
                    if error.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
                        raise
                    terminal_ok[target] = False
    if sink is not None:
        _feed(sink, None)


class _MetricsSink:
    """The tee's `track.metrics.LineSink`, made (and its module imported) only when the run has
    `__metrics__` patterns or once `metrics.jsonl` exists: a run that logs nothing pays nothing."""

    def __init__(self, run_dir: str, patterns: tuple[str, ...]) -> None:
        self.run_dir = run_dir
        self.patterns = patterns
        self.sink: Any = None
        self.next_look = 0.0
        self.started = time.time()  # the run starts now: `time` of the lines counts from here

    def _made(self) -> Any:
        if self.sink is None:
            from expyrun.track.metrics import LineSink

            self.sink = LineSink(self.run_dir, self.patterns, self.started)
        return self.sink

    def _exists(self) -> bool:
        from expyrun.track.files import METRICS_FILE

        return os.path.exists(os.path.join(self.run_dir, METRICS_FILE))

    def feed(self, data: bytes) -> None:
        if self.patterns:
            self._made().feed(data)
        else:
            self.poll()

    def poll(self) -> None:
        if self.sink is None:
            now = time.monotonic()
            if now < self.next_look:
                return
            self.next_look = now + 0.05
            if not self._exists():
                return
        self._made().poll()

    def close(self) -> None:
        if self.sink is not None or self._exists():
            self._made().close()


def _feed(sink: Any, data: bytes | None) -> None:
    """Metrics from output lines are a convenience: a failure there never stops the copy. `b""`:
    no output, a moment to look at what the run appended to `metrics.jsonl` (`LineSink.poll`)."""
    try:
        if data is None:
            sink.close()
        elif data:
            sink.feed(data)
        else:
            sink.poll()
    except Exception:
        pass


def append_log(run_dir: Path, line: str) -> None:
    """One line at the end of a run's `outputs.log` (created when missing), written whole in one call:
    how expyrun tells a run's attempts apart (resume, Slurm requeue, queue and Ray retries)."""
    try:
        fd = os.open(run_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)
    except OSError as error:
        from expyrun import console

        console.warning(f"could not write {run_dir / LOG_FILE}: {error.strerror}")
