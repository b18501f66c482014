"""What a scheduler adds around one prepared folder executed on its node (`python -m expyrun.node`).

The node entry (`expyrun/node.py`) does what every scheduler needs: read the folder, execute it
with the local executor, record its start and end. A scheduler's specifics plug in here: Slurm
checks the folder is the one submitted, passes its time-limit warning (USR2) on as SIGTERM, does
not signal a run twice when it ends the whole job, ends the run's grace before its own SIGKILL
comes (`KillWait`), and requeues an attempt it stopped
(`execute/slurm_node.py: SlurmHooks`). The default hooks do nothing more: a folder handed over by
a queue (or Ray) next needs no more than that.

Every method is called in the node process (the run's launcher), never in the run child, except
`wrap_work`'s result, which the child calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console

if TYPE_CHECKING:
    from expyrun.run.outcome import Outcome
    from expyrun.run.prepare import PreparedRun


class NodeHooks:
    """No scheduler: execute the folder as a local launch would."""

    # GPU ids leased machine-wide (execute/gpu_leases.py), as a local launch leases them; False where
    # the scheduler gives each job its own GPUs (Slurm: "0" of one job is not "0" of another)
    leases_gpus = True

    def check(self, run_dir: Path, record: dict[str, Any]) -> None:
        """Before the folder's config is resolved: raise an `ExpyrunError` to refuse the folder."""

    def configure(self, launch_section: dict[str, Any]) -> None:
        """The folder's `__launch__` section, once resolved: the scheduler's own options."""

    def starting(self, run_dir: Path, attempt: int) -> None:
        """Just before the run starts: say which attempt this is (on stderr, in the log)."""
        console.info(f"attempt {attempt}: executing {run_dir}")

    def on_start(self, record: dict[str, Any]) -> None:
        """The run started: fields for its record (`running`, written just after this)."""

    def wrap_work(self, work: Callable[[], Any]) -> Callable[[], Any]:
        """What the run child calls (a command run `exec`s its program; a Python one returns)."""
        return work

    @contextlib.contextmanager
    def executing(self, received: list[int]) -> Iterator[None]:
        """Around the execution: a scheduler's own signals may be appended to `received` (the
        executor's stop signals, passed on to the run as `forwarded` says)."""
        yield

    def forwarded(self, received: int, default: int | None) -> int | None:
        """The signal the run gets for a stop signal this process received (`default`: the local
        executor's choice), or None when the scheduler signalled the run itself already."""
        return default

    def stop_grace(self, received: int, grace_s: float) -> float:
        """How long the run may take to end after the stop signal `received` before it is killed
        (`grace_s`: a local launch's 10 s); shorter where the scheduler kills this process sooner."""
        return grace_s

    def stopped(self, stopped_by: int | None) -> None:
        """The execution ended; `stopped_by` is the stop signal received, if any."""

    def take_over_end(self, prepared: PreparedRun, outcome: Outcome) -> int | None:
        """The run ended with `outcome`: an exit code when the scheduler ends this attempt itself
        (a requeue: the folder is `queued` again); None to record the end as a local launch does."""
        return None


def refuse_edited_config(run_dir: Path, expected: str | None, since: str) -> None:
    """A prepared folder runs only as prepared: its `config.yml` must still have the sha256 recorded
    when it was handed over (`since`: "the job was submitted", "the run was queued"). An edit made while
    it waited would run values its record does not hold, so the attempt fails instead, saying so."""
    if not expected:
        return
    from expyrun.errors import ConfigError
    from expyrun.execute.slurm_script import config_digest

    try:
        found = config_digest(run_dir)
    except OSError:
        return  # resolving it says what is wrong
    if found != expected:
        raise ConfigError(
            f"{run_dir / 'config.yml'} was changed after {since}: not executed",
            f"a prepared folder runs only as prepared; run the edited file as a new run: "
            f"expyrun {run_dir / 'config.yml'}",
        )
