"""Log capture at the file-descriptor level, by a tee process that outlives the runs.

The run child's file descriptors 1 and 2 are pipes read by a tee process in a session of its own:
everything written to them (print, logging, C code, child processes, tracebacks, faulthandler)
reaches `outputs.log` and the original stdout/stderr. The tee writes each chunk to the log before
the terminal and keeps reading until every writer is gone, so a SIGKILL of the run (or of its whole
process group) loses nothing that was written; when the launcher is SIGKILLed, the tee stops the
runs' process groups and drains what they wrote. The launcher's own descriptors are left alone: its
messages go to the terminal, not into the run's log.

One tee serves every run of a launcher (`TeeProcess`): it is forked once, at the first run, and is
handed each run's pipes and log over a Unix socket (SCM_RIGHTS); it says on a pipe when a run's log
is complete. Why not a tee per run: on two cores, a fork of the ~20 MB launcher and the exit of a
process per point were a fifth of a 100-point sweep's CPU time, all of it in the way of `jobs: 2`
(benchmarks/bench_sweep.py); handing a run over costs two `sendmsg` calls. For a sweep's points the
tee also forks the run children (`TeeProcess.spawn`, reporting their ends as waitpid would): after
each fork of its own, the launcher took ~600 copy-on-write page faults a point.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from expyrun.run.descriptors import close_all_but

LOG_FILE = "outputs.log"
SPAWN_PAYLOAD_MAX = 60_000  # a run whose pickled arguments are larger is forked by the launcher
_PARENT_CHECK_MS = 200  # how often the tee looks whether the launcher is still there
_FD_BYTES = 4  # a descriptor in an SCM_RIGHTS message: a C int


class Tee:
    """One run's capture: the write ends its fds 1 and 2 become (`stdout`, `stderr`: one pipe when
    both go to the same place, so the order of all writes is kept), and, once the tee has copied
    everything and every writer is gone, `done`, with why the log could not be written, if so."""

    def __init__(self, key: int, stdout: int, stderr: int, process: TeeProcess) -> None:
        self.key = key
        self.stdout = stdout  # write end for the run's fd 1
        self.stderr = stderr  # write end for the run's fd 2 (the same pipe as stdout when shared)
        self.process = process
        self.done = False
        self.log_error: str | None = None

    def watch(self, run_pgid: int) -> None:
        """Tell the tee the run's process group, which it kills if the launcher dies (SIGKILL)."""
        with contextlib.suppress(OSError):  # the tee is gone: `TeeProcess.collect` says so
            self.process.send({"watch": self.key, "pgid": run_pgid})

    def reaped(self) -> None:
        """The run's child was reaped and its group killed: a tee still copying for a process that
        left the group (a daemon) no longer stops that group if the launcher dies (its id may be
        another group's by then)."""
        if not self.done:
            with contextlib.suppress(OSError):
                self.process.send({"reaped": self.key})

    def close_writers(self) -> None:
        """The run child holds its own copies of the write ends: the launcher lets go of them."""
        for fd in {self.stdout, self.stderr}:
            with contextlib.suppress(OSError):
                os.close(fd)


class TeeProcess:
    """The launcher's side of the one tee: `open` hands it a run, `collect` reads which runs' logs
    are complete (`done_fd` is readable then), `close` lets it exit once the logs it copies are.

    The tee is forked at the first `open` (and again if it was killed); its reports come one line
    per run, `KEY` or `KEY why-the-log-is-incomplete`.
    """

    def __init__(self, stdout: int = 1, stderr: int = 2) -> None:
        self.targets = (stdout, stderr)
        self.shared = False  # stdout and stderr go to the same place: one pipe per run
        self.pid = 0  # 0: not started, or gone
        self.control: Any = None  # the launcher's end of the socket (a `_socket.socket`)
        self.done_fd = -1
        self.pending: dict[int, Tee] = {}  # runs whose log is not complete yet
        self.exits: dict[int, int] = {}  # key -> wait status of a run child the tee forked (`spawn`)
        self.watched: dict[int, int] = {}  # key -> pid of a run child the tee forked
        self._next_key = 0
        self._partial = b""

    def open(self, log_path: Path, metrics: tuple[str, ...] = ()) -> Tee:
        """New pipes for a run writing to `log_path`, handed to the tee. `metrics`: the run's
        `__metrics__` patterns, matched by the tee against every line (`track.metrics.LineSink`,
        which also times the lines a program appends to `$EXPYRUN_METRICS` without a `time`)."""
        if self.pid and self._tee_ended():  # killed: the runs it served are done, a new one takes this run
            self.collect()
            if self.pid:
                self._lost()
        if self.pid == 0:
            self._start()
        out_read, out_write = os.pipe()
        err_read, err_write = (out_read, out_write) if self.shared else os.pipe()
        readers = [out_read] if self.shared else [out_read, err_read]
        try:
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError:
            for fd in {out_read, out_write, err_read, err_write}:
                os.close(fd)
            raise
        key, self._next_key = self._next_key, self._next_key + 1
        message = {"add": key, "dir": str(log_path.parent), "metrics": list(metrics)}
        try:
            try:
                self.send(message, [*readers, log_fd])
            except OSError:  # the tee is gone (killed by someone): a new one
                self._start()
                self.send(message, [*readers, log_fd])
        except BaseException:
            for fd in {out_write, err_write}:
                os.close(fd)
            raise
        finally:
            for fd in (*readers, log_fd):  # the tee holds its own copies now
                os.close(fd)
        tee = self.pending[key] = Tee(key, out_write, err_write, self)
        return tee

    def send(self, message: dict[str, Any], fds: list[int] | None = None, payload: bytes = b"") -> None:
        import _socket

        fds_data = b"".join(fd.to_bytes(_FD_BYTES, sys.byteorder, signed=True) for fd in fds or ())
        ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds_data)] if fds_data else []
        self.control.sendmsg([json.dumps(message).encode() + b"\n" + payload], ancillary)

    def spawn(self, tee: Tee, payload: bytes) -> tuple[int, int]:
        """Have the tee fork the run child of `tee` (`payload`: the pickled arguments of
        `run.child.start` but the output); returns its pid (also its group) and the read end of its
        result pipe. Its end is reported by `collect` (`exits`), not to `os.waitpid` here. Raises
        OSError when the tee cannot (the caller forks the run itself).

        Why: a fork of the launcher write-protects its ~20 MB, and the launcher then takes ~600 page
        faults a point as it goes on: 2 ms of system time a point, a sweep's main cost on 2 cores. The
        tee, idle between forks, pays the fork without them."""
        import _socket

        if len(payload) > SPAWN_PAYLOAD_MAX:
            raise OSError(f"a run of {len(payload)} bytes is forked by the launcher")
        self.send({"spawn": tee.key}, sorted({tee.stdout, tee.stderr}), payload)
        while not select.select([self.control], [], [], 1.0)[0]:  # (the run children it forked hold
            if self._tee_ended():  # its end of the socket: its death shows here, not as end of file)
                raise OSError("the tee process is gone")
        data, ancillary, _, _ = self.control.recvmsg(1 << 12, _socket.CMSG_SPACE(_FD_BYTES))
        fds = _received_fds(ancillary)
        reply: dict[str, Any] = json.loads(data) if data else {"error": "the tee process is gone"}
        if "pid" not in reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError(reply.get("error", "no run child"))
        pid = int(reply["pid"])
        self.watched[tee.key] = pid
        return pid, fds[0]

    def collect(self) -> None:
        """Read the tee's reports (never blocks): each marks a run's `Tee` done. When the tee is gone,
        every run it served is done, its log possibly incomplete."""
        if self.done_fd < 0:
            return
        gone = False
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while chunk := os.read(self.done_fd, 1 << 16):
                self._partial += chunk
            gone = True
        # the run children the tee forked hold the write end of its reports: a killed tee shows as gone
        gone = gone or (bool(self.watched) and self._tee_ended())
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            key, _, why = line.decode(errors="replace").partition(" ")
            if key.startswith("!"):  # a run child the tee forked ended: `!KEY STATUS`
                self.exits[int(key[1:])] = int(why)
                self.watched.pop(int(key[1:]), None)
                continue
            tee = self.pending.pop(int(key), None)
            if tee is not None:
                tee.done, tee.log_error = True, why or None
        if gone:
            self._lost()

    def _lost(self) -> None:
        for tee in self.pending.values():
            tee.done, tee.log_error = True, "the tee process ended before the run's output did"
        for key in self.watched:  # the run children it forked are reported killed (their groups are, then)
            self.exits.setdefault(key, signal.SIGKILL)
        self.pending.clear()
        self.watched.clear()
        self._forget()

    def _tee_ended(self) -> bool:
        try:
            return self.pid != 0 and os.waitpid(self.pid, os.WNOHANG) != (0, 0)
        except ChildProcessError:
            return True

    def close(self) -> None:
        """No more runs: the tee exits once the logs it copies are complete; one still copying for a
        daemon that holds a run's output goes on in the background and is not waited for."""
        if self.pid == 0:
            return
        with contextlib.suppress(OSError):
            self.send({"end": True})
        self._forget()

    def _forget(self) -> None:
        self.control.close()
        os.close(self.done_fd)
        with contextlib.suppress(ChildProcessError):  # an exiting tee is not waited for (a few ms)
            os.waitpid(self.pid, os.WNOHANG)
        self.pid, self.control, self.done_fd, self._partial = 0, None, -1, b""

    def _start(self) -> None:
        """Fork the tee: its own session (signals to a run's group or the terminal's spare it), no
        descriptor of the launcher's but the terminal's (a GPU lease or a queue claim must not live
        as long as the tee), the garbage collector kept off the launcher's objects."""
        import _socket

        if self.pid:  # it was killed: the runs it served are done, their logs possibly incomplete
            self.collect()
            if self.pid:
                self._lost()
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = self.targets
        self.shared = same_destination(stdout, stderr)
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0)
        done_read, done_write = os.pipe()
        launcher = os.getpid()
        pid = os.fork()
        if pid == 0:  # the tee
            code = 0
            try:
                signal.set_wakeup_fd(-1)
                os.setsid()
                close_all_but({0, 1, 2, stdout, stderr, theirs.fileno(), done_write})
                _serve(theirs, done_write, launcher, self.targets, self.shared)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        os.close(done_write)
        os.set_blocking(done_read, False)
        self.pid, self.control, self.done_fd = pid, ours, done_read


def same_destination(fd_a: int, fd_b: int) -> bool:
    """Whether two descriptors write to the same file, pipe or terminal."""
    try:
        a, b = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors an SCM_RIGHTS message carried (not inherited by programs a run executes)."""
    import _socket

    fds = [
        int.from_bytes(cdata[i : i + _FD_BYTES], sys.byteorder, signed=True)
        for level, kind, cdata in ancillary
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
        for i in range(0, len(cdata) - len(cdata) % _FD_BYTES, _FD_BYTES)
    ]
    for fd in fds:
        os.set_inheritable(fd, False)
    return fds


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a terminal someone made non-blocking: wait until it takes more
            select.select([], [fd], [])
            continue
        view = view[written:]


class _Run:
    """A run the tee copies: its pipes (read end -> the terminal's fd it goes to), its log."""

    def __init__(self, key: int, log_fd: int, sink: _MetricsSink) -> None:
        self.key = key
        self.log_fd = log_fd
        self.sink = sink
        self.sources: dict[int, int] = {}
        self.pgid: int | None = None
        self.log_error: str | None = None


class _Tee:
    """The tee process: copies each chunk to its run's log, then to the terminal, until every writer
    of every run is gone and the launcher said it will hand over no more (or is dead).

    Messages from the launcher (JSON, over a SOCK_SEQPACKET socket): `{"add": key, "dir": run folder,
    "metrics": patterns}` with the run's read ends and its log as SCM_RIGHTS descriptors, `{"watch":
    key, "pgid": group}` once its child is forked, `{"reaped": key}` once the launcher reaped it, and
    `{"end": true}`. Reports to the launcher (a pipe): `key` or `key why` once a run's log is complete.

    A log that cannot be written (disk full) never stops the copy to the terminal: the tee says why
    once on stderr and in the run's report, and the run goes on. The launcher's death (SIGKILL) is
    noticed by the tee's parent changing, checked at least every `_PARENT_CHECK_MS`: the tee then
    kills the runs' process groups and drains what they wrote.
    """

    def __init__(self, control: Any, done: int, launcher: int, targets: tuple[int, int], shared: bool) -> None:
        self.control = control
        self.done = done
        self.launcher = launcher
        self.targets = targets
        self.shared = shared
        self.runs: dict[int, _Run] = {}
        self.readers: dict[int, _Run] = {}  # read end -> its run
        self.terminal_ok = dict.fromkeys(targets, True)
        self.ending = False  # the launcher hands over no more runs
        self.launcher_dead = False
        self.control_fd = control.fileno()
        self.children: dict[int, int] = {}  # pid -> key: run children forked here
        self.poller = select.poll()
        self.poller.register(self.control_fd, select.POLLIN)
        wake_read, wake_write = os.pipe()  # SIGCHLD of those children wakes the poll
        for fd in (wake_read, wake_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.wake = wake_read
        self.poller.register(wake_read, select.POLLIN)

    def serve(self) -> None:
        while not ((self.ending or self.launcher_dead) and not self.runs):
            ready = self.poller.poll(_PARENT_CHECK_MS)
            if not self.launcher_dead and os.getppid() != self.launcher:
                self.launcher_dead = True
                self.receive()  # runs handed over just before it died: their groups are stopped too
            for fd, _ in ready:
                if fd == self.control_fd:
                    self.receive()
                elif fd in self.readers:
                    self.copy(fd)
                elif fd == self.wake:
                    with contextlib.suppress(OSError):
                        os.read(self.wake, 1 << 12)
            for run in list(self.runs.values()):
                _feed(run.sink, b"")
                if self.launcher_dead:
                    self.kill(run)
            if self.children:
                self.reap()

    def receive(self) -> None:
        """Every message the launcher sent: a run handed over (its pipes and log), its process group,
        or the end."""
        import _socket

        if self.control is None:
            return
        while True:
            try:
                data, ancillary, _, _ = self.control.recvmsg(1 << 16, _socket.CMSG_SPACE(3 * _FD_BYTES))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, ancillary = b"", []
            fds = _received_fds(ancillary)
            if not data:  # the launcher is gone without saying the end
                self.poller.unregister(self.control_fd)
                self.control, self.control_fd = None, -1
                self.launcher_dead = self.launcher_dead or not self.ending
                return
            header, _, payload = data.partition(b"\n")
            self.handle(json.loads(header), fds, payload)

    def handle(self, message: dict[str, Any], fds: list[int], payload: bytes = b"") -> None:
        if "spawn" in message:
            self.spawn(message["spawn"], fds, payload)
        elif "add" in message:
            *readers, log_fd = fds
            sink = _MetricsSink(message["dir"], tuple(message["metrics"]))
            run = self.runs[message["add"]] = _Run(message["add"], log_fd, sink)
            for reader, target in zip(readers, self.targets[:1] if self.shared else self.targets, strict=True):
                run.sources[reader] = target
                self.readers[reader] = run
                self.poller.register(reader, select.POLLIN)
        elif "watch" in message:
            watched = self.runs.get(message["watch"])
            if watched is not None:  # (a run whose output ended already is not watched)
                watched.pgid = message["pgid"]
        elif "reaped" in message:  # the launcher reaped the run and killed its group: nothing to stop
            reaped = self.runs.get(message["reaped"])
            if reaped is not None:
                reaped.pgid = None
        elif message.get("end"):  # every run's child was reaped (or killed) by now: no group to stop
            self.ending = True
            for run in self.runs.values():
                run.pgid = None

    def spawn(self, key: int, fds: list[int], payload: bytes) -> None:
        """Fork the run child of run `key` here (`TeeProcess.spawn`), with the write ends of its pipes
        (`fds`); reply with its pid and its result pipe, or why not."""
        reply: dict[str, Any] = {"spawned": key}
        result: list[int] = []
        try:
            import pickle
            from pathlib import Path

            from expyrun.run import child

            work, run_dir, cwd, environment, from_snapshot, no_stdin = pickle.loads(payload)
            output = (fds[0], fds[-1])
            pid, result_fd = child.start(work, Path(run_dir), Path(cwd), output, environment, from_snapshot,
                                         None, no_stdin=no_stdin, close_inherited=True)  # fmt: skip
        except Exception as error:
            reply["error"] = f"{type(error).__name__}: {error}"
        else:
            reply["pid"], result = pid, [result_fd]
            self.children[pid] = key
            run = self.runs.get(key)
            if run is not None:
                run.pgid = pid
                if self.launcher_dead:
                    self.kill(run)
        finally:
            for fd in set(fds):
                os.close(fd)
        import _socket

        fds_data = b"".join(fd.to_bytes(_FD_BYTES, sys.byteorder, signed=True) for fd in result)
        with contextlib.suppress(OSError):
            self.control.sendmsg(
                [json.dumps(reply).encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds_data)] if result else []
            )
        for fd in result:
            os.close(fd)

    def reap(self) -> None:
        """Report the run children forked here that ended (`!KEY STATUS`), as the launcher's waitpid would."""
        for pid, key in list(self.children.items()):
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped, status = pid, signal.SIGKILL
            if reaped:
                del self.children[pid]
                with contextlib.suppress(OSError):
                    os.write(self.done, f"!{key} {status}\n".encode())

    def kill(self, run: _Run) -> None:
        """The launcher died: stop the run's group, once (the group id may be reused later)."""
        if run.pgid is not None:
            with contextlib.suppress(OSError):
                os.killpg(run.pgid, signal.SIGKILL)
            run.pgid = None

    def copy(self, fd: int) -> None:
        run = self.readers[fd]
        data = os.read(fd, 1 << 16)
        if not data:
            self.poller.unregister(fd)
            os.close(fd)
            del self.readers[fd], run.sources[fd]
            if not run.sources:
                self.finish(run)
            return
        if run.log_error is None:
            try:
                _write_all(run.log_fd, data)
            except OSError as error:
                run.log_error = f"{LOG_FILE} cannot be written ({error.strerror}); the run goes on"
                self.show(self.targets[1], f"expyrun: warning: {run.log_error}\n".encode())
        _feed(run.sink, data)
        self.show(run.sources[fd], data)

    def show(self, target: int, data: bytes) -> None:
        if self.terminal_ok[target]:
            try:
                _write_all(target, data)
            except OSError:  # the terminal went away (EPIPE, EIO, EBADF): keep logging
                self.terminal_ok[target] = False

    def finish(self, run: _Run) -> None:
        """Every writer of the run is gone: its log is complete; the launcher hears it."""
        del self.runs[run.key]
        os.close(run.log_fd)
        _feed(run.sink, None)
        with contextlib.suppress(OSError):  # (a launcher that is gone reads no more)
            os.write(self.done, f"{run.key} {run.log_error or ''}".rstrip().encode() + b"\n")


def _serve(control: Any, done: int, launcher: int, targets: tuple[int, int], shared: bool) -> None:
    import gc

    gc.freeze()  # the launcher's objects: never collected here (no copy-on-write, no stray finalizer)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    control.setblocking(False)
    os.set_blocking(done, False)
    _Tee(control, done, launcher, targets, shared).serve()


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
