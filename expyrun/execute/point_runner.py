"""The worker side of sweep points on reused workers: a point's entry point called in this process.

Why: `__launch__.reuse_workers: true` runs a sweep's points in the reused worker processes of
`expyrun.execute.trial_workers` (the study's), so the entry module is imported once per worker,
not once per point. `trial_worker_main` points fds 1 and 2 at the point's `outputs.log`, enters
its folder and turns SIGINT/SIGTERM into an interruption; this runner calls the entry point and
answers how it ended, as the run child would record it: a result, an exception with its
traceback in the log, `sys.exit`. Module-level state lives on from one point to the next.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from expyrun.run.child import Terminated, jsonable
from expyrun.run.entry_point import ConfigMismatch, call_entry_point
from expyrun.run.status import Status


class PointRunner:
    """Built once per worker (`init` is unused); called once per point with its pickled call."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.root: str | None = None  # the import root this worker put first on sys.path

    def __call__(self, task: dict[str, Any]) -> dict[str, Any]:
        run, import_root, config, environment = pickle.loads(base64.b64decode(task["call"]))
        os.environ.update(environment)
        self._import_from(Path(import_root))
        try:
            return {"status": Status.COMPLETED, "result": jsonable(call_entry_point(run, Path(import_root), config))}
        except (KeyboardInterrupt, Terminated):
            raise  # the worker records the interruption
        except ConfigMismatch as error:  # or SignatureMismatch: one line, no traceback
            _write_stderr(f"expyrun: {error}\n")
            return _failed(error)
        except SystemExit as error:
            if error.code in (None, 0):
                return {"status": Status.COMPLETED, "result": None}
            if not isinstance(error.code, int):  # as the interpreter does: the message goes to stderr
                _write_stderr(f"{error.code}\n")
            return {"status": Status.FAILED, "exception": {"type": "SystemExit", "message": str(error.code)}}
        except BaseException as error:
            with contextlib.suppress(Exception):
                from expyrun.run.tracebacks import print_user_traceback

                print_user_traceback()
            return _failed(error)

    def _import_from(self, root: Path) -> None:
        """Each point's snapshot holds the same files; the module imported by the first point is
        reused, and sys.path keeps one entry for the points' folders (not one per point)."""
        if self.root is not None and self.root in sys.path:
            sys.path.remove(self.root)
        self.root = str(root)
        sys.path.insert(0, self.root)


def _failed(error: BaseException) -> dict[str, Any]:
    return {"status": Status.FAILED, "exception": {"type": type(error).__name__, "message": str(error)}}


def _write_stderr(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(text)
        sys.stderr.flush()
