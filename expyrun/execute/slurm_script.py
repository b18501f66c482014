"""The job script: `#SBATCH` lines from `__launch__.slurm`, the `setup` lines, then the one command
that executes a prepared run folder on the node.

One script serves a single run (one job) or many folders (a job array, one task per folder):
the folders are listed in the script, and `SLURM_ARRAY_TASK_ID` picks one, so the script is the
whole, readable record of what was submitted. The last line `exec`s the interpreter, which then is
the batch shell itself: `--signal=B:USR2@...` and `scancel --signal=USR2 --batch` reach expyrun
and not a shell that would die of them.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from expyrun.execute.slurm_options import SlurmOptions

NODE_MODULE = "expyrun.execute.slurm_node"
SCRIPT_FILE = "slurm.sh"


def job_name(name: str) -> str:
    """A job name squeue can show: the run (or sweep, or study) name without spaces or slashes."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")[:100] or "expyrun"


def job_script(
    options: SlurmOptions,
    folders: Sequence[Path],
    name: str,
    output: str,
    cwd: Path,
    array: bool,
    python: str | None = None,
) -> str:
    """The script for `folders` (one: a single job, unless `array`; several: an array, task i
    executing `folders[i]`). `output`: Slurm's output file pattern (`%j`, `%A`, `%a`)."""
    lines = ["#!/bin/bash", f"# expyrun: executes {len(folders)} prepared run folder(s) on the node (SPEC 8)"]
    sbatch = [f"--job-name={job_name(name)}"]
    if options.partition:
        sbatch.append(f"--partition={options.partition}")
    sbatch += [f"--time={options.time}", f"--cpus-per-task={options.cpus_per_task}"]
    if options.gpus_per_task:
        sbatch.append(f"--gpus-per-task={options.gpus_per_task}")
    if options.mem:
        sbatch.append(f"--mem={options.mem}")
    if array:
        limit = f"%{options.array_parallelism}" if options.array_parallelism else ""
        sbatch.append(f"--array=0-{len(folders) - 1}{limit}")
    if options.signal_grace_s:
        sbatch.append(f"--signal=B:USR2@{options.signal_grace_s}")
    sbatch.append("--requeue" if options.requeue else "--no-requeue")
    sbatch += ["--open-mode=append", f"--output={output}", f"--chdir={cwd}"]
    for key, value in options.options.items():
        sbatch.append(f"--{key}" if value is None else f"--{key}={value}")
    lines += [f"#SBATCH {option}" for option in sbatch]
    lines.append("")
    lines += list(options.setup)
    if options.setup:
        lines.append("")
    lines.append(f"python={shlex.quote(python or sys.executable)}  # EXPYRUN_PYTHON, set in `setup`, takes over")
    command = f'exec "${{EXPYRUN_PYTHON:-$python}}" -m {NODE_MODULE}'
    if array:
        lines.append("folders=(")
        lines += [f"  {shlex.quote(str(folder))}" for folder in folders]
        lines.append(")")
        lines.append(f'{command} "${{folders[$SLURM_ARRAY_TASK_ID]}}"')
    else:
        lines.append(f"{command} {shlex.quote(str(folders[0]))}")
    return "\n".join(lines) + "\n"
