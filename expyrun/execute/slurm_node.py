"""Inside a Slurm job: execute one prepared run folder exactly as a local launch would, and requeue
it when Slurm warns of a time limit or a preemption.

`python -m expyrun.execute.slurm_node RUN_DIR` is the last line of the job script (`exec`ed, so
this process is the batch shell and receives `--signal=B:USR2`). The folder's `config.yml` is
read back as the values it records (a resolved config is never interpolated again; its secrets
come from the job's environment, as a rerun of `config.yml` does), only if it is still the file
submitted (its sha256 in `run.json`), and executed by the local executor: the same run child,
tee, signals and record as on a laptop.
`run.json` gets `running` with this node's host, pid and interpreter, the job's ids, `attempt`,
and the frozen requirements of the interpreter that runs it here.

Stopping (SPEC 8): USR2 (the time-limit warning, or `scancel --signal=USR2 --batch|--full`) and
SIGTERM send SIGTERM to the run's process group (the entry point may save a checkpoint in its
folder), SIGKILL 10 s later. The attempt then requeues itself (`scontrol requeue`) when `requeue`
is set and attempts are left, and the next one runs in the same folder with `EXPYRUN_ATTEMPT` one
higher, after a line naming it in `outputs.log`. A SIGTERM sent by a person (`scancel JOB`: neither
a preemption nor the time limit) is not undone by a requeue: the run ends `interrupted`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.errors import ConfigError, ExpyrunError
from expyrun.execute.local import LocalExecutor
from expyrun.run.capture import LOG_FILE
from expyrun.run.record import RUN_FILE, host_name, now, write_json_atomic

ACTIVE_STATUSES = ("queued", "running")
SCONTROL_TIMEOUT_S = 30.0


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # until the run starts (its default would kill the job)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        console.error(f"usage: python -m {__spec__.name if __spec__ else 'expyrun.execute.slurm_node'} RUN_DIR")
        return 2
    try:
        return execute_folder(Path(args[0]).absolute())
    except ExpyrunError as error:
        console.error(str(error))
        return error.exit_code


def execute_folder(run_dir: Path) -> int:
    """Execute the prepared folder `run_dir` in this job; the exit code of a local launch."""
    try:
        record = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ExpyrunError(f"{run_dir}: not a prepared run folder ({error})") from None
    if record.get("status") not in ACTIVE_STATUSES:
        console.info(f"{run_dir} is already {record.get('status')}: not executed again")
        return 0
    with contextlib.suppress(OSError):  # where expyrun was launched, as a local launch runs there
        os.chdir(record["cwd"])
    from expyrun.config import resolve_config
    from expyrun.execute.launch_spec import parse_launch
    from expyrun.execute.slurm_options import parse_slurm

    attempt = int(record.get("attempt") or 0) + 1
    try:
        _check_as_submitted(run_dir, record)
        resolved = resolve_config(run_dir / "config.yml", [], cwd=Path(record["cwd"]))
        section = resolved.values.get("__launch__") or {}
        options = parse_slurm(section.get("slurm"))
        launch_spec = parse_launch(section, resolved.values.get("__optuna__"), on_node=True)
    except ExpyrunError as error:  # e.g. a secret variable missing from the job's environment
        _fail_before_start(run_dir, record, attempt, type(error).__name__, str(error))
        raise
    return _Attempt(run_dir, record, resolved, options, launch_spec, attempt).execute()


def _check_as_submitted(run_dir: Path, record: dict[str, Any]) -> None:
    """The folder's `config.yml` is the one submitted: `run.json` records it, and it is what runs.

    An edit made while the job waited in the queue would run values that the record (written at
    submission) does not hold: the attempt fails instead, saying so.
    """
    expected = (record.get("slurm") or {}).get("config_sha256")
    if not expected:
        return
    from expyrun.execute.slurm_submit import config_digest

    try:
        found = config_digest(run_dir)
    except OSError:
        return  # resolving it says what is wrong
    if found != expected:
        raise ConfigError(
            f"{run_dir / 'config.yml'} was changed after the job was submitted: not executed",
            f"a prepared folder runs only as submitted; run the edited file as a new run: "
            f"expyrun {run_dir / 'config.yml'}",
        )


def _fail_before_start(run_dir: Path, record: dict[str, Any], attempt: int, kind: str, message: str) -> None:
    """The folder cannot be executed on this node: its record says why (not `queued` for good)."""
    record.update(status="failed", attempt=attempt, host=host_name(), ended_at=now(), exit_code=2,
                  exception={"type": kind, "message": message})  # fmt: skip
    with contextlib.suppress(OSError):
        write_json_atomic(run_dir / RUN_FILE, record)
    update_sweep(record, "failed", None, record["exception"])


class _Attempt:
    """One execution of the folder in this job."""

    def __init__(self, run_dir: Path, record: dict[str, Any], resolved: Any, options: Any, launch: Any,
                 attempt: int) -> None:  # fmt: skip
        from expyrun.run.prepare import PreparedRun

        self.prepared = PreparedRun(resolved, run_dir, record, bool(record.get("debug")))
        self.options = options
        self.launch = launch
        self.attempt = attempt
        self.job_id = os.environ.get("SLURM_JOB_ID")
        self.node = os.environ.get("SLURMD_NODENAME") or host_name()
        self.cause: str | None = None  # USR2 or SIGTERM, when the attempt was stopped
        self.job_at_stop: dict[str, str] | None = None  # `scontrol show job` when SIGTERM came

    def execute(self) -> int:
        from expyrun.execute.local import Job, exit_code
        from expyrun.execute.outcome import Outcome

        prepared = self.prepared
        if self.attempt > 1:
            _append_log(prepared.run_dir, f"expyrun: attempt {self.attempt} of {self.options.max_attempts} "
                                          f"(Slurm job {self.job_id}, node {self.node}, {now()})")  # fmt: skip
        console.info(f"attempt {self.attempt}: executing {prepared.run_dir} (job {self.job_id} on {self.node})")
        environment = {"EXPYRUN_ATTEMPT": str(self.attempt)}
        sweep = prepared.record.get("sweep")
        if isinstance(sweep, dict):
            environment["EXPYRUN_SWEEP_POINT"] = str(sweep.get("point"))
        gpus = self.launch.gpus if not prepared.record.get("study") else None  # a study's trial workers take them
        executor = _NodeExecutor(self, gpus=gpus, on_start=self._on_start)
        started = time.monotonic()

        def on_usr2(_signum: int, _frame: Any) -> None:
            self.cause = self.cause or "USR2"
            executor.received.append(signal.SIGTERM)  # passed on as SIGTERM, like a local SIGTERM

        work = self._work()
        if callable(work):  # a command run `exec`s its program: it keeps the default for USR2
            work = partial(_ignoring_usr2, work)
        signal.signal(signal.SIGUSR2, on_usr2)
        try:
            outcomes = executor.execute([Job(prepared, work, environment)])
        finally:  # a warning after the run ended changes nothing (and must not kill this process)
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        if executor.stopped_by == signal.SIGTERM and self.cause is None:
            self.cause = "SIGTERM"
        outcome = outcomes[0] if outcomes else Outcome("interrupted", exit_code([], executor.stopped_by))
        outcome = self._complete(outcome)
        if outcome.status == "interrupted" and self.cause is not None and self._should_requeue():
            return self._requeue(outcome)
        from expyrun.run.launch import finish_record, report

        finish_record(prepared, outcome, time.monotonic() - started)
        update_sweep(prepared.record, outcome.status, outcome.result, outcome.exception)
        report(outcome, prepared.run_dir)
        return exit_code([outcome], executor.stopped_by)

    def _work(self) -> Any:
        """What the run child does: the study driver for a study folder, else the entry point (or command)."""
        from expyrun.run.launch import run_work

        prepared = self.prepared
        resolved = prepared.resolved
        body = None
        if prepared.record.get("study"):
            from expyrun.run.prepare import run_base
            from expyrun.tune.driver import Driver
            from expyrun.tune.spec import parse_spec

            spec = parse_spec(resolved.values["__optuna__"], resolved.raw, resolved.run.name)
            body = Driver(resolved, spec, run_base(resolved, prepared.debug), False, self.launch).run
        return run_work(prepared, body)

    def _complete(self, outcome: Any) -> Any:
        """A command run's outcome read from its exit status and result file, as a local launch reads it."""
        from expyrun.run.launch import complete_outcome

        if self.prepared.record.get("study"):  # a study's own run has no result file: its trials do
            return outcome
        return complete_outcome(outcome, self.prepared.resolved.run, self.prepared.run_dir)

    def _on_start(self, job: Any, pid: int, gpu: str | None) -> None:
        from expyrun.run.launch import record_start

        prepared = self.prepared
        record = prepared.record
        slurm = dict(record.get("slurm") or {})
        slurm.update(job_id=_int(self.job_id), node=self.node)
        record.update(host=host_name(), attempt=self.attempt, slurm=slurm, launcher="slurm")
        if prepared.resolved.run.python is None:  # the interpreter that runs it here
            record["python"] = {"version": sys.version.split()[0], "executable": sys.executable}
        record_start(prepared, gpu, self._gather)
        update_sweep(record, "running")

    def _gather(self) -> None:
        """Frozen requirements of this node's interpreter; git state only in `--debug`, where the code
        runs from `__code__` as it is now (otherwise it was read where the snapshot was taken)."""
        from expyrun.run.launch import record_environment

        prepared = self.prepared
        if not prepared.debug:
            record_environment(prepared, None, None)  # git state was recorded where the snapshot was taken
            return
        from expyrun.run.git_state import GitProbe

        git = GitProbe(prepared.resolved.run.code)
        try:
            record_environment(prepared, git, None)
        finally:
            git.close()

    def _should_requeue(self) -> bool:
        """Requeue after USR2 (the time-limit warning or a preemption notice), or after a SIGTERM that
        Slurm sent for the time limit or a preemption; never after a person's `scancel`."""
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

    def _requeue(self, outcome: Any) -> int:
        """Put the folder back to `queued` and ask Slurm to run the job again; Slurm then ends this one."""
        prepared = self.prepared
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the requeue ends this attempt's job with SIGTERM
        line = (f"expyrun: attempt {self.attempt} stopped ({self.cause}); requeued: attempt {self.attempt + 1} "
                f"of {self.options.max_attempts} follows")  # fmt: skip
        _append_log(prepared.run_dir, line)
        prepared.record.update(status="queued", exit_code=None)
        if outcome.log_error is not None:
            prepared.record["log_error"] = outcome.log_error
        prepared.write_record()
        update_sweep(prepared.record, "queued")
        try:
            answer = subprocess.run(["scontrol", "requeue", str(self.job_id)], capture_output=True, text=True,
                                    timeout=SCONTROL_TIMEOUT_S, check=False)  # fmt: skip
            refused = answer.stderr.strip() if answer.returncode != 0 else None
        except (OSError, subprocess.TimeoutExpired) as error:
            refused = str(error)
        if refused is None or _being_requeued(self.job_id):  # (Slurm may requeue a preempted job itself)
            console.info(f"attempt {self.attempt} stopped ({self.cause}): job {self.job_id} requeued")
            return outcome.exit_code
        from expyrun.run.launch import finish_record, report

        _append_log(prepared.run_dir, f"expyrun: the requeue failed ({refused}): the run is interrupted")
        finish_record(prepared, outcome, 0.0)
        update_sweep(prepared.record, outcome.status)
        report(outcome, prepared.run_dir)
        return outcome.exit_code


class _NodeExecutor(LocalExecutor):
    """The local executor, except that a SIGTERM Slurm sent to every process of a job it is ending
    (time limit, preemption, `scancel`) is not sent to the run again: a second SIGTERM would cut short
    the checkpoint the first one started. A SIGTERM for the batch shell alone (the job still running),
    or under `proctrack/pgid` (which signals the batch shell's process group only), is passed on."""

    def __init__(self, attempt: _Attempt, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attempt = attempt

    def forwarded(self, received: int) -> int | None:
        attempt = self.attempt
        if received != signal.SIGTERM or attempt.cause is not None or not attempt.job_id:
            return super().forwarded(received)
        attempt.cause = "SIGTERM"
        attempt.job_at_stop = _show_job(attempt.job_id)
        ending = attempt.job_at_stop.get("JobState", "RUNNING") != "RUNNING"
        if ending and _proctrack() not in ("proctrack/pgid", ""):
            return None
        return super().forwarded(received)


def _proctrack() -> str:
    """The cluster's ProctrackType (how slurmd finds a job's processes); '' when it cannot be asked."""
    try:
        answer = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                                timeout=SCONTROL_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in answer.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ProctrackType":
            return value.strip()
    return ""


def _ignoring_usr2(work: Any) -> Any:
    """In the run child: USR2 is expyrun's warning (it sends SIGTERM), so neither the run nor what it
    starts dies of one that `scancel --signal=USR2 --full` delivers to every process of the job."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    return work()


def _append_log(run_dir: Path, line: str) -> None:
    try:
        fd = os.open(run_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)
    except OSError as error:
        console.warning(f"could not write {run_dir / LOG_FILE}: {error.strerror}")


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
    folder = Path(sweep["dir"])
    try:
        with _locked(folder / ".sweep.lock"):
            data = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
            point = data["points"][sweep["point"]]
            point.update(status=status, run_dir=record.get("run_dir"))
            if status not in ACTIVE_STATUSES:
                point["result"] = result
            counts: dict[str, int] = {}
            for item in data["points"]:
                counts[item["status"]] = counts.get(item["status"], 0) + 1
            data["counts"] = counts
            ended = all(item["status"] not in (*ACTIVE_STATUSES, "pending") for item in data["points"])
            if ended:
                failed = any(item["status"] in ("failed", "interrupted") for item in data["points"])
                data.update(status="failed" if failed else "completed", ended_at=now())
            elif status == "running":
                data["status"] = "running"
            write_json_atomic(folder / "sweep.json", data)
            if status not in ACTIVE_STATUSES:
                values = ", ".join(f"{k}={v}" for k, v in (sweep.get("overrides") or {}).items())
                why = f" ({exception.get('type', 'error')}: {exception.get('message', '')})" if exception else ""
                line = f"point {sweep['point']} {status}{why} ({values}): {record.get('run_dir')}\n"
                with open(folder / "outputs.log", "a", encoding="utf-8") as log:
                    log.write(line)
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


if __name__ == "__main__":
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
