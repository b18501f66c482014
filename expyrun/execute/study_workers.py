"""`__launch__.workers: N` for a study on this machine: N launches of the same command sharing it.

Each worker is exactly what a separate `expyrun tune.yml` would be (its own study run folder,
driver and trial workers) on the same storage, so `n_trials` stays a study total. This process
only supervises: it passes stop signals on (SIGINT as SIGINT, SIGTERM and SIGHUP as SIGTERM)
and exits like the worst of them.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from expyrun import console
from expyrun.execute.parent_death import signal_on_parent_death
from expyrun.run.status import SIGNAL_EXIT, STOP_SIGNALS

GRACE_S = 30.0  # each worker has its own 10 s grace for its trials, plus writing its summary


def run_study_workers(argv: list[str], workers: int) -> int:
    """Start `workers` launches of `argv` (each with one worker) and wait for all of them."""
    command = [sys.executable, "-m", "expyrun", *argv, "--+__launch__.workers=1"]
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        forwarded = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
        for process in processes:
            if process.poll() is None:
                process.send_signal(forwarded)

    processes: list[subprocess.Popen[bytes]] = []
    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    arm = signal_on_parent_death()  # this process SIGKILLed: each launch gets SIGTERM and stops as for one
    try:
        for index in range(workers):
            stdin = None if index == 0 else subprocess.DEVNULL
            # this process has one thread: a preexec_fn is safe here
            processes.append(subprocess.Popen(command, stdin=stdin, preexec_fn=arm))
        console.info(f"{workers} study workers started: {', '.join(str(p.pid) for p in processes)}")
        codes = _wait_all(processes, received, on_signal)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return SIGNAL_EXIT[signal.Signals(received[0])]
    return max(codes, key=lambda code: (code != 0, code))


def _wait_all(
    processes: list[subprocess.Popen[bytes]], received: list[int], on_signal: Callable[[int, Any], None]
) -> list[int]:
    """Every launch's exit code. Ctrl-C on a terminal reaches only the process group in its
    foreground, the run of the launch holding the terminal, not this process: a launch that ends
    130 without a signal of ours was stopped by Ctrl-C, and the others are stopped as if we had
    heard it. After a stop signal, each launch gets `GRACE_S` before SIGKILL."""
    codes: dict[int, int] = {}
    deadline: float | None = None
    while len(codes) < len(processes):
        for index, process in enumerate(processes):
            if index in codes or (code := process.poll()) is None:
                continue
            codes[index] = code
            if code == SIGNAL_EXIT[signal.SIGINT] and not received and len(codes) < len(processes):
                console.info("Ctrl-C: stopping the other study workers")
                on_signal(signal.SIGINT, None)
        if received and deadline is None:
            deadline = time.monotonic() + GRACE_S
        if deadline is not None and time.monotonic() >= deadline:
            for process in processes:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
            deadline = math.inf
        if len(codes) < len(processes):
            time.sleep(0.05)
    return [codes[index] for index in range(len(processes))]
