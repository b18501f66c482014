"""Inside a Slurm job: Slurm's hooks around the node entry, which executes one prepared run folder
exactly as a local launch would; and the requeue of an attempt stopped for a time limit or a preemption.

`python -m expyrun.node RUN_DIR` is the last line of the job script (`exec`ed, so this process is
the batch shell and receives `--signal=B:USR2`); it reads `run.json`'s `slurm` field and calls
`SlurmHooks`. The folder's `config.yml` runs only if it is still the file submitted (its sha256 in
`run.json`), executed by the local executor: the same run child, tee, signals and record as on a
laptop.
`run.json` gets `running` with this node's host, pid and interpreter, the job's ids, `attempt`,
and the frozen requirements of the interpreter that runs it here.

Stopping (SPEC 8): USR2 (the time-limit warning, or `scancel --signal=USR2 --batch|--full`) and
SIGTERM send SIGTERM to the run's process group (the entry point may save a checkpoint in its
folder), SIGKILL 10 s later; or sooner when Slurm is ending the job (`scancel JOB`, the time limit):
its SIGKILL comes `KillWait` after its SIGTERM, to this process too, so the run's grace ends
`KILL_WAIT_MARGIN_S` before that and this process records the end itself. The attempt then
requeues itself (`scontrol requeue`) when `requeue` is set and attempts are left, and the next one
runs in the same folder with `EXPYRUN_ATTEMPT` one higher, after a line naming it in `outputs.log`.
A SIGTERM sent by a person (`scancel JOB`: neither a preemption nor the time limit) is not undone
by a requeue: the run ends `interrupted`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.execute.node_hooks import NodeHooks, refuse_edited_config
from expyrun.run.capture import append_log
from expyrun.run.record import host_name, now
from expyrun.run.status import ACTIVE, Status

if TYPE_CHECKING:
    from expyrun.execute.slurm_options import SlurmOptions
    from expyrun.run.outcome import Outcome
    from expyrun.run.prepare import PreparedRun

ACTIVE_STATUSES = tuple(ACTIVE)  # (expyrun.run.status.ACTIVE; this name kept for its importers)
SCONTROL_TIMEOUT_S = 30.0
KILL_WAIT_MARGIN_S = 2.0  # the run's grace ends this long before Slurm's SIGKILL: this process records its end


class SlurmHooks(NodeHooks):
    """Slurm's specifics around a folder executed by `python -m expyrun.node` in a job."""

    leases_gpus = False  # Slurm gives the job its GPUs: no lease across jobs

    def __init__(self) -> None:
        self.options: SlurmOptions | None = None
        self.attempt = 1
        self.job_id = os.environ.get("SLURM_JOB_ID")
        self.node = os.environ.get("SLURMD_NODENAME") or host_name()
        self.cause: str | None = None  # USR2 or SIGTERM, when the attempt was stopped
        self.job_at_stop: dict[str, str] | None = None  # `scontrol show job` when SIGTERM came

    def check(self, run_dir: Path, record: dict[str, Any]) -> None:
        """The folder's `config.yml` is the one submitted: `run.json` records it, and it is what runs.

        An edit made while the job waited in the queue would run values that the record (written at
        submission) does not hold: the attempt fails instead, saying so.
        """
        refuse_edited_config(run_dir, (record.get("slurm") or {}).get("config_sha256"), "the job was submitted")

    def configure(self, launch_section: dict[str, Any]) -> None:
        from expyrun.execute.slurm_options import parse_slurm

        self.options = parse_slurm(launch_section.get("slurm"))

    def starting(self, run_dir: Path, attempt: int) -> None:
        assert self.options is not None  # (configure came first)
        self.attempt = attempt
        if attempt > 1:
            append_log(run_dir, f"expyrun: attempt {attempt} of {self.options.max_attempts} "
                                 f"(Slurm job {self.job_id}, node {self.node}, {now()})")  # fmt: skip
        console.info(f"attempt {attempt}: executing {run_dir} (job {self.job_id} on {self.node})")

    def on_start(self, record: dict[str, Any]) -> None:
        slurm = dict(record.get("slurm") or {})
        slurm.update(job_id=_int(self.job_id), node=self.node)
        record.update(slurm=slurm, launcher="slurm")

    def wrap_work(self, work: Callable[[], Any]) -> Callable[[], Any]:
        if callable(work):  # a command run `exec`s its program: it keeps the default for USR2
            return partial(_ignoring_usr2, work)
        return work

    @contextlib.contextmanager
    def executing(self, received: list[int]) -> Iterator[None]:
        """USR2 (the time-limit warning) is passed on as SIGTERM, like a local SIGTERM."""

        def on_usr2(_signum: int, _frame: Any) -> None:
            self.cause = self.cause or "USR2"
            received.append(signal.SIGTERM)

        signal.signal(signal.SIGUSR2, on_usr2)
        try:
            yield
        finally:  # a warning after the run ended changes nothing (and must not kill this process)
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)

    def forwarded(self, received: int, default: int | None) -> int | None:
        """A SIGTERM Slurm sent to every process of a job it is ending (time limit, preemption,
        `scancel`) is not sent to the run again: a second SIGTERM would cut short the checkpoint the
        first one started. A SIGTERM for the batch shell alone (the job still running), or under
        `proctrack/pgid` (which signals the batch shell's process group only), is passed on."""
        if self._job_ending(received) and _slurm_config().get("ProctrackType", "") not in ("proctrack/pgid", ""):
            return None
        return default

    def stop_grace(self, received: int, grace_s: float) -> float:
        """When Slurm is ending the job, its SIGKILL follows its SIGTERM after `KillWait` seconds, and
        reaches this process as well as the run: a 10 s grace under a shorter `KillWait` (30 s is
        Slurm's default; clusters set less) would leave the run `running` in its record for good. So
        the run's grace ends `KILL_WAIT_MARGIN_S` before Slurm's SIGKILL (at least half of `KillWait`
        stays the run's, to save its checkpoint): then this process kills what is left, and records
        the end. `KillWait` is asked once (`scontrol show config`), on the first stop only."""
        if not self._job_ending(received):
            return grace_s
        kill_wait = _kill_wait()
        if kill_wait is None:
            return grace_s
        return min(grace_s, max(kill_wait / 2, kill_wait - KILL_WAIT_MARGIN_S))

    def _job_ending(self, received: int) -> bool:
        """Whether `received` is the SIGTERM Slurm sends every process of a job it is ending (not
        RUNNING any more when it comes). Asked of `scontrol show job` at the first SIGTERM that came
        before any USR2 warning; the answer (`job_at_stop`) is kept for the requeue's decision."""
        if received != signal.SIGTERM or not self.job_id:
            return False
        if self.cause is None:
            self.cause = "SIGTERM"
            self.job_at_stop = _show_job(self.job_id)
        if self.cause != "SIGTERM" or self.job_at_stop is None:
            return False
        return self.job_at_stop.get("JobState", "RUNNING") != "RUNNING"

    def stopped(self, stopped_by: int | None) -> None:
        if stopped_by == signal.SIGTERM and self.cause is None:
            self.cause = "SIGTERM"

    def take_over_end(self, prepared: PreparedRun, outcome: Outcome) -> int | None:
        if outcome.status == Status.INTERRUPTED and self.cause is not None and self._should_requeue():
            return self._requeue(prepared, outcome)
        return None

    def _should_requeue(self) -> bool:
        """Requeue after USR2 (the time-limit warning or a preemption notice), or after a SIGTERM that
        Slurm sent for the time limit or a preemption; never after a person's `scancel`."""
        assert self.options is not None
        if not self.options.requeue or self.attempt >= self.options.max_attempts or not self.job_id:
            return False
        if self.cause == "USR2":
            return True
        if self.cause != "SIGTERM":
            return False
        job = self.job_at_stop if self.job_at_stop is not None else _show_job(self.job_id)
        if job.get("PreemptTime", "None") not in ("None", "Unknown", ""):
            return True
        limit, elapsed = _seconds(job.get("TimeLimit")), _seconds(job.get("RunTime"))
        return limit is not None and elapsed is not None and elapsed + 60 >= limit

    def _requeue(self, prepared: PreparedRun, outcome: Outcome) -> int | None:
        """Put the folder back to `queued` and ask Slurm to run the job again; Slurm then ends this one.
        None when the requeue failed: the run then ends `interrupted` as any other."""
        assert self.options is not None
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the requeue ends this attempt's job with SIGTERM
        line = (f"expyrun: attempt {self.attempt} stopped ({self.cause}); requeued: attempt {self.attempt + 1} "
                f"of {self.options.max_attempts} follows")  # fmt: skip
        append_log(prepared.run_dir, line)
        prepared.record.update(status=Status.QUEUED, exit_code=None)
        if outcome.log_error is not None:
            prepared.record["log_error"] = outcome.log_error
        prepared.write_record()
        update_sweep(prepared.record, Status.QUEUED)
        try:
            answer = subprocess.run(["scontrol", "requeue", str(self.job_id)], capture_output=True, text=True,
                                    timeout=SCONTROL_TIMEOUT_S, check=False)  # fmt: skip
            refused = answer.stderr.strip() if answer.returncode != 0 else None
        except (OSError, subprocess.TimeoutExpired) as error:
            refused = str(error)
        if refused is None or _being_requeued(self.job_id):  # (Slurm may requeue a preempted job itself)
            console.info(f"attempt {self.attempt} stopped ({self.cause}): job {self.job_id} requeued")
            return outcome.exit_code
        append_log(prepared.run_dir, f"expyrun: the requeue failed ({refused}): the run is interrupted")
        return None


@functools.cache
def _slurm_config() -> dict[str, str]:
    """`scontrol show config`, read once (only when a stop signal came): `ProctrackType` (how slurmd
    finds a job's processes), `KillWait` (`5 sec`); empty when it cannot be asked."""
    try:
        answer = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                                timeout=SCONTROL_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    fields: dict[str, str] = {}
    for line in answer.stdout.splitlines():
        key, _, value = line.partition("=")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _kill_wait() -> float | None:
    """Slurm's `KillWait`: seconds between the SIGTERM and the SIGKILL that end a job; None when unknown."""
    words = _slurm_config().get("KillWait", "").split()
    try:
        return float(words[0]) if words else None
    except ValueError:
        return None


def _ignoring_usr2(work: Any) -> Any:
    """In the run child: USR2 is expyrun's warning (it sends SIGTERM), so neither the run nor what it
    starts dies of one that `scancel --signal=USR2 --full` delivers to every process of the job."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    return work()


def _int(value: str | None) -> int | str | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return value


def _show_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -o`'s fields (`TimeLimit`, `RunTime`, `PreemptTime`...); empty when it fails."""
    try:
        answer = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                                timeout=SCONTROL_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    fields: dict[str, str] = {}
    for item in answer.stdout.split():
        key, _, value = item.partition("=")
        fields.setdefault(key, value)
    return fields


def _being_requeued(job_id: str | None) -> bool:
    if job_id is None:
        return False
    return _show_job(job_id).get("JobState", "") in ("REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PENDING")


def _seconds(value: str | None) -> int | None:
    """A Slurm duration (`[D-]HH:MM:SS`, `MM:SS`) in seconds; None for UNLIMITED or anything else."""
    if not value or not value[0].isdigit():
        return None
    days, _, clock = value.rpartition("-")
    try:
        parts = [int(part) for part in clock.split(":")]
        total = int(days or 0) * 86400
    except ValueError:
        return None
    while len(parts) < 3:
        parts.insert(0, 0)
    return total + parts[0] * 3600 + parts[1] * 60 + parts[2]


# -- the sweep's own record, kept current by the points' jobs ----------------------------------------


def update_sweep(record: dict[str, Any], status: str, result: Any = None, exception: Any = None) -> None:
    """Set this point's status (and result) in its sweep's `sweep.json`, under a lock shared by every
    task of the array; the last point to end sets the sweep's own status and end time."""
    sweep = record.get("sweep")
    if not isinstance(sweep, dict) or not sweep.get("dir"):
        return
    from expyrun.sweep.record import update_point  # sweep.json's one owner

    folder = Path(sweep["dir"])
    fields: dict[str, Any] = {"status": str(status), "run_dir": record.get("run_dir")}
    line = None
    if status not in ACTIVE_STATUSES:
        fields["result"] = result
        values = ", ".join(f"{k}={v}" for k, v in (sweep.get("overrides") or {}).items())
        why = f" ({exception.get('type', 'error')}: {exception.get('message', '')})" if exception else ""
        line = f"point {sweep['point']} {status}{why} ({values}): {record.get('run_dir')}"
    try:
        with _locked(folder / ".sweep.lock"):
            update_point(folder, sweep["point"], fields, line)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        console.warning(f"could not update {folder / 'sweep.json'}: {error}")


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    """An exclusive POSIX lock (`lockf`: it also holds across NFS clients) on `path`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
