"""The job script: `#SBATCH` lines from `__launch__.slurm`, the `setup` lines, then the one command
that executes a prepared run folder on the node.

One script serves a single run (one job) or many folders (a job array, one task per folder):
the folders are listed in the script, and `SLURM_ARRAY_TASK_ID` picks one, so the script is the
whole, readable record of what was submitted. The last line `exec`s the interpreter, which then is
the batch shell itself: `--signal=B:USR2@...` and `scancel --signal=USR2 --batch` reach expyrun
and not a shell that would die of them.

sbatch reads an `#SBATCH` line as words: a value with a space, a `"` or a `#` is written in double
quotes (sbatch's own quoting, backslash escapes); `%` in the output folder is written `%%` so that
Slurm's `%j`/`%A`/`%a` patterns expand only in the file name. The script is a file anyone may read:
a secret is never written in it (see `slurm_submit.script_options`).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from expyrun.execute.slurm_options import SlurmOptions

NODE_MODULE = "expyrun.node"  # the node entry: `python -m expyrun.node FOLDER`
SCRIPT_FILE = "slurm.sh"


def job_name(name: str) -> str:
    """A job name squeue can show: the run (or sweep, or study) name without spaces or slashes."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")[:100] or "expyrun"


def output_pattern(home: Path, array: bool) -> str:
    """Slurm's output file in `home`: `%` of the folder escaped, the job's ids as Slurm patterns."""
    return str(home).replace("%", "%%") + ("/slurm-%A_%a.out" if array else "/slurm-%j.out")


def sbatch_word(text: str) -> str:
    """`text` as one word of an `#SBATCH` line: as is when sbatch reads it so, else double-quoted
    with `\\` and `"` escaped (sbatch ends a word at a space and a comment at `#`)."""
    if text and not any(ch.isspace() or ch in '"#\\' for ch in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def job_script(
    options: SlurmOptions,
    folders: Sequence[Path],
    name: str,
    output: str,
    cwd: Path,
    array: bool,
    python: str | None = None,
    on_command_line: dict[str, str | None] | None = None,
) -> str:
    """The script for `folders` (one: a single job, unless `array`; several: an array, task i
    executing `folders[i]`). `output`: Slurm's output file pattern (`%j`, `%A`, `%a`; `output_pattern`).
    `on_command_line`: options holding a secret, given to sbatch on its command line instead, shown
    here with `$NAME` references."""
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
    sbatch += ["--open-mode=append", f"--output={sbatch_word(output)}", f"--chdir={sbatch_word(str(cwd))}"]
    for key, value in options.options.items():
        sbatch.append(f"--{key}" if value is None else f"--{key}={sbatch_word(value)}")
    lines += [f"#SBATCH {option}" for option in sbatch]
    for key, value in (on_command_line or {}).items():
        lines.append(f"# --{key}={value} is given on sbatch's command line at submission: it holds a secret")
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


def config_digest(run_dir: Path) -> str:
    """The sha256 of a prepared folder's `config.yml`: recorded at submission, checked by the node
    (`slurm_node.SlurmHooks.check`) before it executes the folder."""
    import hashlib

    return hashlib.sha256((run_dir / "config.yml").read_bytes()).hexdigest()
