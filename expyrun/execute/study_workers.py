"""`__launch__.workers: N` for a study on this machine: N launches of the same command sharing it.

Each worker is exactly what a separate `expyrun tune.yml` would be (its own study run folder,
driver and trial workers) on the same storage, so `n_trials` stays a study total. This process
only supervises: it passes stop signals on (SIGINT as SIGINT, SIGTERM and SIGHUP as SIGTERM)
and exits like the worst of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from expyrun import console
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
    try:
        for index in range(workers):
            processes.append(subprocess.Popen(command, stdin=None if index == 0 else subprocess.DEVNULL))
        console.info(f"{workers} study workers started: {', '.join(str(p.pid) for p in processes)}")
        codes = [_wait(process, received) for process in processes]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return SIGNAL_EXIT[signal.Signals(received[0])]
    return max(codes, key=lambda code: (code != 0, code))


def _wait(process: subprocess.Popen[bytes], received: list[int]) -> int:
    """The worker's exit code; after a stop signal, it gets `GRACE_S` before SIGKILL."""
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if received:
            deadline = time.monotonic() + GRACE_S
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            return process.wait(timeout=30)
