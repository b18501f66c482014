"""A local pool of reused worker processes that execute prepared run folders, one at a time each.

Why reused workers rather than a fork per task (or a preloaded fork server): a worker is a fresh
interpreter started with `subprocess` (no fork of the driver, whose other threads may hold a
storage's lock), it imports the entry point once and keeps its CUDA context, so heavy imports
and GPU initialisation are paid once per worker and a module that initialises CUDA at import works
(nothing is forked after the import). The price: module-level state persists between the tasks
of one worker. A worker that crashes (segfault, `os._exit`, killed) fails its one task and the
next task starts a replacement in its slot.

Each slot has its own GPU when `gpus` is given: the worker of slot i sees only `gpus[i]` in
`CUDA_VISIBLE_DEVICES`, so no id is given to two tasks at once. Workers stay in the driver's
process group: a SIGINT/SIGTERM sent to the group reaches the tasks, and `stop` waits for their
answers for a grace period before killing them.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expyrun.execute.gpu_leases import Lease

from expyrun.run.status import PASSED_ON, PASSED_ON_EXIT

_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from expyrun.execute.trial_worker_main import start; start(int(sys.argv[2]), int(sys.argv[3]))"
)
INTERRUPT_EXITS = PASSED_ON_EXIT  # a worker stopped by SIGINT/SIGTERM exits 130/143 (run/status.py)


@dataclass
class Finished:
    """A task that ended: the worker's reply, or why there is none."""

    key: int
    reply: dict[str, Any] | None
    failure: str | None = None  # the worker died without answering: how
    interrupted: str | None = None  # SIGINT / SIGTERM, when that is how it died
    killed: bool = False  # killed by the pool after the grace period


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    commands: IO[str]
    replies: int
    gpu: str | None
    key: int | None = None
    buffer: bytes = b""
    answers: list[dict[str, Any]] = field(default_factory=list)


class WorkerPool:
    """`size` slots; `submit` hands a task to the idle worker of a slot (starting one if needed)."""

    def __init__(self, size: int, hello: dict[str, Any], cwd: Path, gpus: tuple[str, ...] | None = None) -> None:
        if gpus is not None and len(gpus) < size:
            raise ValueError(f"{size} workers need {size} GPU ids, got {gpus!r}")
        self.hello = hello
        self.cwd = cwd
        self.gpus = gpus
        self.slots: list[_Worker | None] = [None] * size
        self.leases: dict[int, Lease] = {}  # slot -> its GPU's lease, taken for the worker it will start
        self.told_waiting: set[int] = set()  # slots whose GPU another launch holds (said once)

    @property
    def busy(self) -> int:
        return sum(1 for w in self.slots if w is not None and w.key is not None)

    def has_free_slot(self) -> bool:
        return any(self._free(index) for index in range(len(self.slots)))

    def _free(self, index: int) -> bool:
        """An idle worker, or a slot without one whose GPU is leased for the worker it will start
        (`execute/gpu_leases.py`: taken now if free; a GPU held by another launch keeps the slot
        empty, said once)."""
        worker = self.slots[index]
        if worker is not None:
            return worker.key is None
        if self.gpus is None or index in self.leases:
            return True
        from expyrun.execute.gpu_leases import try_lease, waiting_message

        lease = try_lease(self.gpus[index], f"study trial workers of pid {os.getpid()}")
        if lease is None:
            if index not in self.told_waiting:
                from expyrun import console

                console.info(waiting_message([self.gpus[index]]))
                self.told_waiting.add(index)
            return False
        self.told_waiting.discard(index)
        self.leases[index] = lease
        return True

    def submit(self, key: int, payload: dict[str, Any], run_dir: Path) -> tuple[int, str | None]:
        """Send a task to a free slot's worker; returns its pid and GPU id."""
        index = next(i for i in range(len(self.slots)) if self._free(i))
        worker = self.slots[index]
        if worker is None:
            worker = self.slots[index] = self._spawn(None if self.gpus is None else self.gpus[index],
                                                     self.leases.pop(index, None))  # fmt: skip
        worker.key = key
        try:
            worker.commands.write(json.dumps({"run_dir": str(run_dir), "payload": payload}) + "\n")
            worker.commands.flush()
        except (BrokenPipeError, ValueError):  # it died: wait() reports the task as failed
            pass
        return worker.process.pid, worker.gpu

    def _spawn(self, gpu: str | None, lease: Lease | None = None) -> _Worker:
        """A worker for a slot; it holds the GPU's lease (`lease`, handed over: this process lets go)
        for as long as it lives, however it ends."""
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        argv = [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", _BOOTSTRAP]  # type: ignore[attr-defined]
        held = (lease.fd,) if lease is not None and lease.fd is not None else ()
        try:
            process = subprocess.Popen(
                [*argv, json.dumps(sys.path), str(commands_read), str(replies_write)],
                cwd=self.cwd,
                env=env,
                pass_fds=(commands_read, replies_write, *held),
            )
        finally:
            os.close(commands_read)
            os.close(replies_write)
            if lease is not None:
                lease.release()
        os.set_blocking(replies_read, False)
        commands = os.fdopen(commands_write, "w", encoding="utf-8")
        commands.write(json.dumps(self.hello) + "\n")
        commands.flush()
        return _Worker(process, commands, replies_read, gpu)

    def wait(self, timeout: float, wake_fd: int | None = None) -> list[Finished]:
        """Tasks that ended within `timeout` seconds (sooner when `wake_fd` becomes readable)."""
        for lease in self.leases.values():  # taken for workers not started (no task came): not kept
            lease.release()  # while waiting (has_free_slot takes them again)
        self.leases.clear()
        workers = [w for w in self.slots if w is not None]
        finished = self._collect(workers)
        if finished:
            return finished
        fds = [w.replies for w in workers] + ([wake_fd] if wake_fd is not None else [])
        with contextlib.suppress(InterruptedError):
            select.select(fds, [], [], timeout)
        return self._collect(workers)

    def _collect(self, workers: list[_Worker]) -> list[Finished]:
        finished: list[Finished] = []
        for worker in workers:
            ended = self._read(worker)
            if worker.answers and worker.key is not None:
                finished.append(Finished(worker.key, worker.answers.pop(0)))
                worker.key = None
            if ended or worker.process.poll() is not None:  # EOF, or dead while a forked child holds the pipe
                self._read(worker)
                if worker.answers and worker.key is not None:
                    finished.append(Finished(worker.key, worker.answers.pop(0)))
                    worker.key = None
                if worker.key is not None:
                    finished.append(self._death(worker))
                self._discard(worker)
        return finished

    def _read(self, worker: _Worker) -> bool:
        """Read what the worker answered so far; True at end of file."""
        while True:
            try:
                chunk = os.read(worker.replies, 65536)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            worker.buffer += chunk
            *lines, worker.buffer = worker.buffer.split(b"\n")
            worker.answers += [json.loads(line) for line in lines if line.strip()]

    def _death(self, worker: _Worker) -> Finished:
        assert worker.key is not None
        try:
            code = worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its pipe but lives on: not a worker any more
            worker.process.kill()
            code = worker.process.wait()
        pid = worker.process.pid
        if code < 0:
            name = signal.Signals(-code).name
            message = f"the trial's process (trial worker {pid}) was killed by {name}"
            passed_on = name in (sig.name for sig in PASSED_ON)
            return Finished(worker.key, None, message, interrupted=name if passed_on else None)
        interrupted = INTERRUPT_EXITS.get(code)
        message = f"the trial's process (trial worker {pid}) exited with status {code}"
        return Finished(worker.key, None, message, interrupted=interrupted)

    def _discard(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.commands.close()
        with contextlib.suppress(OSError):
            os.close(worker.replies)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=5)
        self.slots[self.slots.index(worker)] = None

    def stop(
        self, grace: float, wake_fd: int | None = None, exception: type[BaseException] = KeyboardInterrupt
    ) -> list[Finished]:
        """After a signal: idle workers end, busy ones have `grace` seconds to answer (their task
        received the signal with the process group, so `exception` is not needed here), then are
        killed; returns every task that ended."""
        for worker in self.slots:
            if worker is not None and worker.key is None:
                with contextlib.suppress(OSError):
                    worker.commands.close()
        finished: list[Finished] = []
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            finished += self.wait(min(0.5, max(0.0, deadline - time.monotonic())), wake_fd)
        for worker in self.slots:
            if worker is not None and worker.key is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                worker.process.wait()
                self._read(worker)
                if worker.answers:
                    finished.append(Finished(worker.key, worker.answers.pop(0)))
                else:
                    message = f"killed (SIGKILL): still running {grace:g} s after the study was stopped"
                    finished.append(Finished(worker.key, None, message, killed=True))
                worker.key = None
        self.close()
        return finished

    def close(self, timeout: float = 5) -> None:
        """End every worker: end of file on its commands, then SIGKILL if it lingers."""
        workers = [w for w in self.slots if w is not None]
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.commands.close()
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            with contextlib.suppress(OSError):
                os.close(worker.replies)
        self.slots = [None] * len(self.slots)
        for lease in self.leases.values():  # taken for workers that never started
            lease.release()
        self.leases.clear()
