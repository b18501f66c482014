"""`launcher: slurm`: prepare the run folders here, submit them as one job or one job array, record the ids.

One run is one job; a sweep is one array, a task per point; a study is one array of `workers`
tasks, each executing its own study folder on the shared storage (as `workers` local launches
would). Every folder is prepared first (`execute/batch.py`, `queued`: configs, snapshot, git
state of the copied code); then `sbatch --parsable --hold` submits the job script, the ids go into
each `run.json` and only then `scontrol release` lets the jobs start, so a job never races the
record of its id. Anything that fails before the release (sbatch refusing the job, a full disk)
cancels what was submitted and removes every folder this launch made: exit 2, nothing left queued.

Plain `sbatch`/`squeue`/`scontrol` rather than submitit: submitit pickles a Python callable for
the node to unpickle, while a prepared folder already holds everything the node needs (configs,
snapshot, record) and is executed by `python -m expyrun.node FOLDER`; the job script
stays a readable file beside the runs, and the three commands cost no dependency.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.config import ResolvedConfig
from expyrun.errors import UsageError
from expyrun.execute.batch import Batch
from expyrun.execute.launch_spec import LaunchSpec
from expyrun.execute.slurm_options import SlurmOptions
from expyrun.execute.slurm_script import SCRIPT_FILE, config_digest, job_script, output_pattern
from expyrun.run.prepare import run_base
from expyrun.run.status import Status

SBATCH_TIMEOUT_S = 120.0


def submit(
    resolved: ResolvedConfig,
    launch: LaunchSpec,
    sweep: Any,
    study: Any,
    argv: list[str],
    flags: set[str],
) -> int:
    """Submit the config's runs to Slurm (or print the job script with `--dry-run`); the exit code."""
    options: SlurmOptions = launch.slurm
    debug = "--debug" in flags
    cwd = Path.cwd()
    _check(launch, study)
    options, hidden, shown = script_options(resolved, options)
    if "--dry-run" in flags:
        folders, home, name, array = _planned(resolved, launch, sweep, study, debug, cwd)
        script = job_script(options, folders, name, output_pattern(home, array), cwd, array, on_command_line=shown)
        sys.stdout.write(console.visible(script))  # for people: a setup line's control bytes shown, not acting
        return 0
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError("`__launch__.launcher: slurm`: sbatch is not on PATH",
                         "submit from a Slurm login node, or use launcher: local")  # fmt: skip
    batch = _SlurmBatch(resolved, debug, argv, cwd, launcher="slurm")
    try:
        if not batch.prepare_launch(launch, sweep, study, "--needed" in flags, "nothing to submit"):
            return 0
        batch.record_git()
        array = sweep is not None or study is not None
        name = sweep.name if sweep is not None else study.study_name if study is not None else resolved.run.name
        batch.submit(sbatch, options, name, array, hidden, shown)
    except BaseException:
        batch.discard()
        raise
    finally:
        batch.close_git()
    if not launch.wait:
        return 0
    from expyrun.execute.slurm_wait import wait_for_runs

    return wait_for_runs(batch.prepared, batch.job_id, batch.sweep_folder, stream=sweep is None and study is None)


def _check(launch: LaunchSpec, study: Any) -> None:
    """Settings Slurm gives no meaning to. (A study's storage is checked by the command, which knows
    studies: `commands/launch.py`; an executor imports nothing above it.)"""
    if study is None and launch.jobs > 1:
        console.warning("`__launch__.jobs` is ignored with launcher: slurm (each run is its own job); "
                        "`slurm.array_parallelism` caps how many run at once")  # fmt: skip
    if launch.workers > 1 and study is None:
        console.warning("`__launch__.workers` is for studies; ignored here")


class _SlurmBatch(Batch):
    """The folders of one submission, submitted as one job or one job array."""

    job_id: str | None = None

    def _release(self) -> None:
        """Let the held job start. A job someone cancelled in between (`scancel` as soon as the records
        name it) cannot be released: that is no error of this launch, as a cancel a moment later is not;
        what it leaves is told as for any job gone (a waiting launch records its runs `died`)."""
        assert self.job_id is not None
        try:
            _scontrol("release", self.job_id)
        except UsageError:
            from expyrun.execute.slurm_queue import JobStates

            states = JobStates.ask(prepared.record["slurm"] for prepared in self.prepared)
            if not all(states.gone(prepared.record["slurm"]) for prepared in self.prepared):
                raise
            console.warning(f"Slurm job {self.job_id} ended before it was released (cancelled?)")

    def submit(self, sbatch: str, options: SlurmOptions, name: str, array: bool,
               hidden: dict[str, str | None], shown: dict[str, str | None]) -> None:  # fmt: skip
        """Write the job script, submit it held, record the ids (and the digest of each `config.yml`:
        the node executes a folder only as it was submitted), then release it."""
        home = self.sweep_folder or self.prepared[0].run_dir
        folders = [prepared.run_dir for prepared in self.prepared]
        script = home / SCRIPT_FILE
        text = job_script(options, folders, name, output_pattern(home, array), self.cwd, array, on_command_line=shown)
        script.write_text(text, encoding="utf-8")
        self.job_id = _sbatch(sbatch, script, hidden)
        try:
            for index, prepared in enumerate(self.prepared):
                output = home / (f"slurm-{self.job_id}_{index}.out" if array else f"slurm-{self.job_id}.out")
                slurm = {"job_id": None if array else _number(self.job_id), "node": None,
                         "array_job_id": _number(self.job_id) if array else None,
                         "array_task_id": index if array else None, "script": str(script), "output": str(output),
                         "config_sha256": config_digest(prepared.run_dir)}  # fmt: skip
                prepared.record["slurm"] = slurm
                prepared.write_record()
            if self.sweep_record is not None:
                self.sweep_record.detach(status=Status.QUEUED, slurm={"array_job_id": _number(self.job_id)})
            self._release()
        except BaseException:
            _cancel(self.job_id)
            raise
        tasks = f"an array of {len(folders)} tasks" if array else "one job"
        where = self.sweep_folder or (folders[0] if len(folders) == 1 else ", ".join(map(str, folders)))
        console.info(f"submitted Slurm job {self.job_id} ({tasks}): {where}")


def _planned(resolved: ResolvedConfig, launch: LaunchSpec, sweep: Any, study: Any, debug: bool,
             cwd: Path) -> tuple[list[Path], Path, str, bool]:  # fmt: skip
    """The folders a submission would prepare now (for `--dry-run`: nothing is created), the folder
    of the job script, the job's name, and whether it is an array."""
    taken: dict[Path, int] = {}

    def next_dir(base: Path, prefix: str = "exp") -> Path:
        if base not in taken:
            try:
                names = os.listdir(base)
            except OSError:
                names = []
            numbered = re.compile(re.escape(prefix) + r"\.(\d+)")
            taken[base] = 1 + max((int(m.group(1)) for m in map(numbered.fullmatch, names) if m), default=-1)
        index = taken[base]
        taken[base] += 1
        return base / f"{prefix}.{index}"

    if sweep is not None:
        from expyrun.sweep.run import point_config

        run = resolved.run
        home = next_dir(run.output_dir / "DEBUG" / sweep.name if debug else run.output_dir / sweep.name, "sweep")
        folders = [next_dir(run_base(point_config(resolved, point, cwd), debug)) for point in sweep.points()]
        return folders, home, sweep.name, True
    if study is not None:
        folders = [next_dir(run_base(resolved, debug)) for _ in range(launch.workers)]
        return folders, folders[0], study.study_name, True
    folder = next_dir(run_base(resolved, debug))
    return [folder], folder, resolved.run.name, False


def _number(job_id: str) -> int | str:
    return int(job_id) if job_id.isdigit() else job_id


def _slurm_message(text: str) -> str:
    """Slurm's own words, one line: `sbatch: error: Batch job submission failed: X` -> `X`."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else "no message"
    message = re.sub(r"^\S+: error: ", "", message)
    return message.replace("Batch job submission failed: ", "")


def script_options(
    resolved: ResolvedConfig, options: SlurmOptions
) -> tuple[SlurmOptions, dict[str, str | None], dict[str, str | None]]:
    """The options the job script may hold, and the sbatch options it may not (with their values,
    and as shown with `${NAME}` references).

    The script is a readable file beside the runs and `--dry-run` prints it: a secret (SPEC 2.2)
    is never written there. A `setup` line that reads one keeps it as `${NAME}`, which the job's
    shell expands from the job's environment (sbatch passes the submitting environment). `#SBATCH`
    lines are expanded by nothing, so an option holding a secret goes on sbatch's command line.
    """
    secrets = sorted(resolved.secret_values.items(), key=lambda item: -len(item[0]))  # longest first
    if not secrets:
        return options, {}, {}

    def referenced(text: str) -> str:
        for value, reference in secrets:
            text = text.replace(value, "${" + reference.lstrip("$") + "}")
        return text

    def carries_secret(path: tuple[str | int, ...]) -> bool:
        return any(p[: len(path)] == path or path[: len(p)] == p for p in resolved.secret_paths)

    setup = tuple(
        referenced(line) if carries_secret(("__launch__", "slurm", "setup", index)) else line
        for index, line in enumerate(options.setup)
    )
    hidden: dict[str, str | None] = {key: value for key, value in options.options.items()
              if value is not None and any(secret in value for secret, _ in secrets)}  # fmt: skip
    kept = {key: value for key, value in options.options.items() if key not in hidden}
    shown: dict[str, str | None] = {key: referenced(value or "") for key, value in hidden.items()}
    return options._replace(setup=setup, options=kept), hidden, shown


def _sbatch(sbatch: str, script: Path, hidden: dict[str, str | None] | None = None) -> str:
    on_line = [f"--{key}" if value is None else f"--{key}={value}" for key, value in (hidden or {}).items()]
    try:
        answer = subprocess.run([sbatch, "--parsable", "--hold", *on_line, str(script)], capture_output=True,
                                text=True, timeout=SBATCH_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UsageError(f"sbatch did not answer in {SBATCH_TIMEOUT_S:g} s (is the Slurm controller up?)") from None
    except OSError as error:
        raise UsageError(f"cannot run sbatch: {error.strerror}") from None
    job_id = answer.stdout.strip().split(";")[0]
    if answer.returncode != 0 or not job_id:
        raise UsageError(f"sbatch refused the job: {_slurm_message(answer.stderr or answer.stdout)}")
    return job_id


def _scontrol(*args: str) -> None:
    try:
        answer = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=SBATCH_TIMEOUT_S,
                                check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        raise UsageError(f"scontrol {' '.join(args)} failed: {error}") from None
    if answer.returncode != 0:
        raise UsageError(f"scontrol {' '.join(args)} failed: {_slurm_message(answer.stderr)}")


def _cancel(job_id: str) -> None:
    """Take a submitted (held) job back; it has not started, so nothing of it remains."""
    try:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=SBATCH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        console.warning(f"could not cancel Slurm job {job_id}: cancel it with `scancel {job_id}`")
