"""The heartbeat thread of a study process: its running trials are alive (see liveness.py).

A thread of its own so that a trial busy for hours (inline, or a worker that never answers) still
beats: other study processes judge a trial dead by its heartbeat. It never forks and only touches
heartbeat files or records database heartbeats.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from expyrun.console import visible


class Heartbeat:
    """A thread calling `beat` every `interval` seconds while trials run. It never forks and only
    touches heartbeat files or records database heartbeats."""

    def __init__(self, interval: float, beat: Any) -> None:
        self.interval = interval
        self.beat = beat
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="expyrun-heartbeat")

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                self.beat()
            except Exception as error:  # a missed beat is not a reason to stop the study
                print(visible(f"expyrun: heartbeat: {type(error).__name__}: {error}"), file=sys.stderr, flush=True)

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
