"""Tasks executed inside the driver process (`isolation: inline`), one at a time or in threads.

A task's output goes through the plain run's tee (`execute/trial_log.py`, forked from this process
with the first task): to its folder's `outputs.log`, and to this process's own fds 1 and 2, the
study's, which reach the study's log and expyrun's streams. One at a time, a task runs in the main
thread with fds 1 and 2 pointed at its pipes, in its folder, with SIGINT/SIGTERM raising in it as in
a run child: everything it writes, C extensions included, lands in its log, in order, and it may
install signal handlers.

Several at once share one process, so fds, the current directory and the environment are the
study's (SPEC 3.3's exception): each thread's Python output (`sys.stdout`, `sys.stderr`, and
`logging` handlers that write to them) is routed to its own task's pipes by stream objects installed
as `sys.stdout`/`sys.stderr` for the duration; what a task writes at the fd level goes to the
study's log (and expyrun's streams). A task that calls `sys.exit` ends only itself (the runner turns
it into a failure). Threads cannot be killed: when the study stops, each running task gets the signal's
exception raised in its thread (at its next Python instruction) and is abandoned if it is still
running after the grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from expyrun.execute.trial_log import LOG_GRACE_S, TaskOutput, streams
from expyrun.execute.trial_workers import Finished
from expyrun.run.capture import Tee
from expyrun.run.child import Terminated, flush_all, until_stopped
from expyrun.run.status import PASSED_ON
from expyrun.run.tracebacks import print_user_traceback

Task = Callable[[], dict[str, Any]]
_SIGNALS = {sig.name: sig for sig in PASSED_ON}  # how a trial reports it was stopped -> the signal


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise Terminated


def _never_answer_from_a_fork(owner: int) -> None:
    """A process the trial forked, come back up here (its `sys.exit` went through the trial's code):
    it is a copy of the study, and must never record, tell or log the trial in the study's place."""
    if os.getpid() != owner:
        flush_all()
        os._exit(0)


class RoutedStream(io.TextIOBase):
    """A text stream that writes to the current thread's target, or to `fallback` for threads
    without one."""

    def __init__(self, fallback: IO[str]) -> None:
        super().__init__()
        self.fallback = fallback
        self._local = threading.local()

    def route(self, target: IO[str] | None) -> None:
        self._local.target = target

    @property
    def target(self) -> IO[str]:
        return getattr(self._local, "target", None) or self.fallback

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.target.flush()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fallback.fileno()

    def isatty(self) -> bool:
        return self.target.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.fallback, "errors", None)


class InlinePool:
    """`jobs` tasks at once in this process; the same interface as WorkerPool."""

    def __init__(self, jobs: int, on_interrupt: Callable[[int], None], gpu: str | None = None) -> None:
        self.jobs = jobs
        self.on_interrupt = on_interrupt
        self.gpu = gpu
        self.pending: list[tuple[int, Task, Path]] = []  # jobs == 1: run by wait(), in the main thread
        self.threads: dict[int, threading.Thread] = {}
        self.finished: list[Finished] = []  # by threads, their logs perhaps not complete yet
        self.ending: list[tuple[Finished, float]] = []  # ...taken from them: until when their log may take
        self.tees: dict[int, Tee] = {}  # a thread's tee, by task
        self.output = TaskOutput()  # the tee (forked with the first task), on this process's fds 1 and 2
        self.mutex = threading.Lock()
        self.done_read, self.done_write = os.pipe()
        os.set_blocking(self.done_read, False)
        self.routed: tuple[RoutedStream, RoutedStream] | None = None
        self.saved: tuple[Any, Any] = (sys.stdout, sys.stderr)
        for stream in (sys.stdout, sys.stderr):  # prints and fd writes in the order they were made
            with contextlib.suppress(AttributeError, ValueError):
                stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        if jobs > 1:
            self.routed = (RoutedStream(sys.stdout), RoutedStream(sys.stderr))
            sys.stdout, sys.stderr = self.routed

    @property
    def busy(self) -> int:
        return len(self.pending) + len(self.threads)

    def has_free_slot(self) -> bool:
        return self.busy < self.jobs

    def submit(self, key: int, task: Task, run_dir: Path) -> tuple[int, str | None]:
        if self.jobs == 1:
            self.pending.append((key, task, run_dir))
            return os.getpid(), self.gpu
        try:
            tee = self.tees[key] = self.output.open(run_dir)  # here: the tee is driven by this thread only
        except OSError as error:  # its folder is gone: the trial fails, saying why
            failed = {"state": "FAIL", "error": {"type": type(error).__name__, "message": str(error)}}
            self.ending.append((Finished(key, failed), 0.0))
            return os.getpid(), self.gpu
        thread = threading.Thread(
            target=self._in_thread, args=(key, task, run_dir, tee), daemon=True, name=f"expyrun-trial-{key}"
        )
        self.threads[key] = thread
        thread.start()
        return os.getpid(), self.gpu

    def wait(self, timeout: float, wake_fd: int | None = None) -> list[Finished]:
        if self.pending:
            key, task, run_dir = self.pending.pop(0)
            return [self._in_main_thread(key, task, run_dir)]
        finished = self._take()
        if finished:
            return finished
        fds = [self.done_read] + ([wake_fd] if wake_fd is not None else [])
        if self.ending:  # a log to be complete: the tee's report, not waited for past its grace
            fds.append(self.output.tees.done_fd)
            timeout = max(0.0, min(timeout, min(deadline for _, deadline in self.ending) - time.monotonic()))
        with contextlib.suppress(InterruptedError):
            select.select([fd for fd in fds if fd >= 0], [], [], timeout)
        return self._take()

    def _take(self) -> list[Finished]:
        """Tasks whose thread ended and whose log is complete (or was given `LOG_GRACE_S`), with the
        log's error, if any."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.done_read, 4096)
        with self.mutex:
            finished, self.finished = self.finished, []
        for item in finished:
            self.threads.pop(item.key, None)
            self.ending.append((item, time.monotonic() + LOG_GRACE_S))
        self.output.tees.collect()
        now = time.monotonic()
        taken, ending = [], []
        for item, deadline in self.ending:
            tee = self.tees.get(item.key)
            if tee is not None and not tee.done and now < deadline:
                ending.append((item, deadline))
                continue
            self.tees.pop(item.key, None)
            if tee is not None and tee.log_error is not None and item.reply is not None:
                item.reply["log_error"] = tee.log_error
            taken.append(item)
        self.ending = ending
        return taken

    def _in_main_thread(self, key: int, task: Task, run_dir: Path) -> Finished:
        handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        tee = self.output.begin(run_dir)  # its log, and the study's own fds 1 and 2 (expyrun's streams)
        home, run_dir_env = os.getcwd(), os.environ.get("EXPYRUN_RUN_DIR")
        interrupted = None
        me = os.getpid()
        try:
            os.chdir(run_dir)
            os.environ["EXPYRUN_RUN_DIR"] = str(run_dir)
            from expyrun.run.resume import set_retry_environment

            set_retry_environment(run_dir)  # EXPYRUN_RETRY_OF of a retried trial (SPEC 14)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, _raise_terminated)
            value, interrupted = until_stopped(task)
        finally:
            _never_answer_from_a_fork(me)
            signal.signal(signal.SIGINT, handlers[0])
            signal.signal(signal.SIGTERM, handlers[1])
            os.chdir(home)
            if run_dir_env is not None:
                os.environ["EXPYRUN_RUN_DIR"] = run_dir_env
            os.environ.pop("EXPYRUN_RETRY_OF", None)  # the study process's own environment has none
            log_error = self.output.end(tee)  # the log complete (or given up on after LOG_GRACE_S)
            if interrupted is not None:
                self.on_interrupt(_SIGNALS[interrupted])
        if interrupted is None:
            return Finished(key, value if log_error is None else {**value, "log_error": log_error})
        return Finished(key, None, f"the trial was stopped by {interrupted}", interrupted=interrupted)

    def _in_thread(self, key: int, task: Task, run_dir: Path, tee: Tee) -> None:
        assert self.routed is not None
        out, err = streams(tee)  # its Python-level output through the tee: its log and expyrun's streams
        self.routed[0].route(out)
        self.routed[1].route(err)
        from expyrun.track.logging import bind

        bind(run_dir)  # expyrun.log in this thread writes the trial's folder (the environment is the study's)
        me = os.getpid()
        try:
            try:
                result = Finished(key, task())
            except KeyboardInterrupt:
                print_user_traceback()
                result = Finished(key, None, "the trial was stopped by SIGINT", interrupted="SIGINT")
            except Terminated:
                sys.stderr.write("expyrun: the trial was terminated (SIGTERM)\n")
                result = Finished(key, None, "the trial was stopped by SIGTERM", interrupted="SIGTERM")
            except BaseException as error:  # never lose a task: it ends, failed
                traceback.print_exc()
                result = Finished(
                    key, {"state": "FAIL", "error": {"type": type(error).__name__, "message": str(error)}}
                )
        finally:
            _never_answer_from_a_fork(me)
            for stream in self.routed:
                stream.route(None)
            for pipe in {out, err}:  # the pipes' write ends: the tee sees the trial's output end
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
        with self.mutex:
            self.finished.append(result)
        with contextlib.suppress(OSError):
            os.write(self.done_write, b".")

    def stop(
        self, grace: float, wake_fd: int | None = None, exception: type[BaseException] = KeyboardInterrupt
    ) -> list[Finished]:
        """The study stops: pending tasks never start, threads get `exception` raised in them and
        `grace` seconds to end; those still running then are abandoned (reported killed)."""
        finished = [
            Finished(key, None, "not started: the study was stopped", killed=True) for key, _, _ in self.pending
        ]
        self.pending = []
        for thread in list(self.threads.values()):
            if thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exception))
        deadline = time.monotonic() + grace
        while self.threads and time.monotonic() < deadline:
            finished += self.wait(min(0.2, max(0.0, deadline - time.monotonic())), wake_fd)
        for key in list(self.threads):
            message = (
                f"abandoned: still running {grace:g} s after the study was stopped (an inline trial cannot be killed)"
            )
            finished.append(Finished(key, None, message, killed=True))
        self.threads.clear()
        finished += [item for item, _ in self.ending]  # (their logs given no more time)
        self.ending = []
        self.close()
        return finished

    def close(self) -> None:
        if self.routed is not None and sys.stdout is self.routed[0]:
            sys.stdout, sys.stderr = self.saved
        self.routed = None
        self.output.close()
        for fd in (self.done_read, self.done_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.done_read = self.done_write = -1
