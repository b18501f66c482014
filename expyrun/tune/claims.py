"""Which trials this study process runs, told to the other study processes sharing the storage.

A trial asked for is claimed at once (under the study's lock, with the ask): owner attributes and a
heartbeat file for a journal or SQLite file (expyrun/tune/liveness.py), Optuna's heartbeat on a
database server. While it runs, the heartbeat thread beats for every claimed trial; when it ends
(told, failed or abandoned) it is released. Other processes judge a trial whose claim went stale
(expyrun/tune/reclaim.py).
"""

from __future__ import annotations

import threading
from typing import Any

from expyrun.tune.liveness import Liveness
from expyrun.tune.spec import StudySpec


class Claims:
    """The claimed trials of one study process; `beat` runs in the heartbeat thread."""

    def __init__(self, spec: StudySpec, liveness: Liveness | None, storage: Any) -> None:
        self.spec = spec
        self.liveness = liveness
        self.storage = storage
        self.running_ids: set[int] = set()
        self.mutex = threading.Lock()

    @property
    def database_heartbeat(self) -> bool:
        """A database server: Optuna's own heartbeat says the trial is alive."""
        return self.liveness is None and self.spec.is_rdb and not self.spec.is_sqlite

    def claim(self, study: Any, trial_id: int) -> None:
        if self.liveness is not None:
            self.liveness.claim(study, trial_id)
        elif self.database_heartbeat:
            self.storage.record_heartbeat(trial_id)
        with self.mutex:
            self.running_ids.add(trial_id)

    def release(self, trial_id: int) -> None:
        with self.mutex:
            self.running_ids.discard(trial_id)
        if self.liveness is not None:
            self.liveness.release(trial_id)

    def beat(self) -> None:
        """Every heartbeat interval, from the heartbeat thread: running trials are alive."""
        with self.mutex:
            ids = sorted(self.running_ids)
        if self.liveness is not None:
            self.liveness.beat(ids)
        elif self.database_heartbeat:
            for trial_id in ids:
                self.storage.record_heartbeat(trial_id)
