"""`expyrun verify RUN`: rerun a run's stored config from its stored snapshot, in an environment
matching its frozen requirements, into `RUN/verify.{k}/`, and say whether it reproduced (SPEC 14).

Why this shape: the rerun is an ordinary prepared run folder (`run.json` `queued`, `config.yml`, the
snapshot) executed by the node entry (`python -m expyrun.node`) with the matching environment's
interpreter: the same run child, tee and record as any run, so nothing about running is written twice.
The environment comes from `verify/environment.py` (cached by the requirements' hash), the comparison
from `verify/compare.py`. `verify.{k}/verdict.json` holds the verdict (`identical`, `within
tolerance`, `differs` with the first differing key or metric and step, `environment differs`); its
line is printed on stdout. Exit 0 when the run reproduced, 1 otherwise, 2 for input that cannot be
verified (not a run, no snapshot: a `--debug` run, a run still running).

Cost beyond the rerun itself: the environment once per requirements (seconds with uv), then a
lookup; a hard-linked copy of the snapshot; reading both runs' metrics.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.errors import UsageError
from expyrun.run.freeze import FROZEN_FILE
from expyrun.run.record import RUN_FILE, load_record, now, write_json_atomic, write_record
from expyrun.run.status import ACTIVE, Status
from expyrun.verify.compare import ENVIRONMENT_DIFFERS, REPRODUCED, Comparison, describe
from expyrun.verify.last import LAST_VERDICT_FILE

VERDICT_FILE = "verdict.json"
PREFIX = "verify"


def verify_run(run_dir: Path, rtol: float = 0.0, atol: float = 0.0) -> int:
    """Verify `run_dir`: 0 when it reproduced (identical or within tolerance), 1 otherwise."""
    run_dir = run_dir.absolute()
    record = _check(run_dir)
    from expyrun.run.folder import allocate_run_dir
    from expyrun.verify.environment import EnvironmentMismatch, matching_python, tool_python

    rerun_dir = allocate_run_dir(run_dir, PREFIX)
    verdict: dict[str, Any] = {"run": str(run_dir), "rerun": str(rerun_dir), "rtol": rtol, "atol": atol}
    tool = _run_section(run_dir).get("__python__")  # a `__python__` run: its requirements are that interpreter's
    own = False
    try:
        if tool:
            recorded = (record.get("python") or {}).get("executable")
            python, cached, own = tool_python(run_dir, recorded if isinstance(recorded, str) else None)
        else:
            python, cached = matching_python(run_dir)
    except EnvironmentMismatch as error:
        return _conclude(rerun_dir, verdict, ENVIRONMENT_DIFFERS, {"reason": str(error)})
    verdict["environment"] = {"python": str(python), "cached": cached, "run_interpreter": own}
    _prepare(run_dir, rerun_dir, record, python if tool else None, replaced=bool(tool) and not own)
    console.info(f"rerunning {run_dir} in {rerun_dir}" + (f" (entry point: {python})" if tool else ""))
    code = _execute(Path(sys.executable) if tool else python, rerun_dir)  # (expyrun need not be in a tool's)
    rerun = load_record(rerun_dir) or {}
    if rerun.get("status") == Status.QUEUED:  # never executed: the environment lacks expyrun (a `__python__` run's)
        reason = f"{python} could not execute the run (exit {code}): is expyrun among its requirements?"
        return _conclude(rerun_dir, verdict, ENVIRONMENT_DIFFERS, {"reason": reason})
    comparison = Comparison(rtol, atol)
    _compare(run_dir, rerun_dir, record, rerun, comparison)
    return _conclude(rerun_dir, verdict, comparison.verdict, comparison.difference)


def _check(run_dir: Path) -> dict[str, Any]:
    """The run's record, when the run can be verified; a `UsageError` saying why not otherwise."""
    record = load_record(run_dir)
    if not isinstance(record, dict) or not record:
        raise UsageError(
            f"{run_dir}: not a run folder (no readable {RUN_FILE})", "give a folder such as outputs/NAME/exp.0"
        )
    if record.get("debug") or not record.get("snapshot"):
        raise UsageError(f"{run_dir}: the run has no code snapshot (a --debug run): it cannot be verified",
                         "verify a run launched without --debug")  # fmt: skip
    from expyrun.reading.runs import effective_status

    status = effective_status(record)
    if status in ACTIVE:
        raise UsageError(f"{run_dir} is {status}: not verified", "wait for it to end")
    if not (run_dir / FROZEN_FILE).is_file():
        raise UsageError(f"{run_dir}: no {FROZEN_FILE}: its environment is unknown", "it cannot be verified")
    if not (run_dir / "config.yml").is_file():
        raise UsageError(f"{run_dir}: no config.yml: nothing to rerun", "it cannot be verified")
    return record


def _prepare(run_dir: Path, rerun_dir: Path, record: dict[str, Any], interpreter: Path | None = None,
             replaced: bool = False) -> None:  # fmt: skip
    """The rerun's folder: the stored `config.yml` as it is (its `__code__` names the run folder: the
    snapshot), the snapshot itself (hard links), and a `queued` record naming the run it verifies.

    `interpreter`: a `__python__` run's, recorded as the rerun's; `replaced`: it is an environment
    built because the run's own no longer matches, written as the copy's `__run__.__python__`
    (every other value as stored)."""
    from expyrun.run.record import start_record

    if interpreter is not None and replaced:
        _write_with_python(run_dir / "config.yml", rerun_dir / "config.yml", interpreter)
    else:
        shutil.copyfile(run_dir / "config.yml", rerun_dir / "config.yml")
    for name in _snapshot_names(run_dir, record):
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, rerun_dir / name, symlinks=True, copy_function=_link_or_copy)
        elif source.is_file():
            _link_or_copy(str(source), str(rerun_dir / name))
    cwd = Path(record["cwd"]) if isinstance(record.get("cwd"), str) else run_dir
    fresh = start_record(str(record.get("name") or run_dir.parent.name), rerun_dir, False,
                         ["verify", str(run_dir)], cwd)  # fmt: skip
    fresh.update(rerun_of=str(run_dir), config=record.get("config"), snapshot=record.get("snapshot"),
                 attempt=None)  # the node entry's first execution of the folder is attempt 1  # fmt: skip
    if interpreter is not None:  # as `run/prepare.py` records a `__python__` run's
        from expyrun.run.command import interpreter_info

        fresh["python"] = interpreter_info(interpreter)
    write_record(rerun_dir, fresh)


def _snapshot_names(run_dir: Path, record: dict[str, Any]) -> list[str]:
    """What the snapshot put in the run folder: a command run's `code/`, else the entry point's
    top-level package or module file (`__main__`'s first name)."""
    from expyrun.run.prepare import CODE_FOLDER

    main = _main_of(run_dir)
    if main is None:
        return [CODE_FOLDER]
    top = main.partition(":")[0].split(".")[0]
    return [top, f"{top}.py", CODE_FOLDER]


def _main_of(run_dir: Path) -> str | None:
    """`__run__.__main__` of the stored config (None for a command run), read as YAML."""
    main = _run_section(run_dir).get("__main__")
    return main if isinstance(main, str) else None


def _run_section(run_dir: Path) -> dict[str, Any]:
    """`__run__` of the stored config, read as YAML (empty when there is none)."""
    import yaml

    data = yaml.safe_load((run_dir / "config.yml").read_text(encoding="utf-8"))
    run = data.get("__run__") if isinstance(data, dict) else None
    return run if isinstance(run, dict) else {}


def _write_with_python(source: Path, target: Path, interpreter: Path) -> None:
    """`source` (a stored `config.yml`) written to `target` with `__run__.__python__` set to
    `interpreter`, marked as resolved as the source is (its values are not interpolated again)."""
    import yaml

    from expyrun.config.dump import dump_resolved, dump_yaml, read_resolved_mark

    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["__run__"]["__python__"] = str(interpreter)
    pending = read_resolved_mark(source)
    target.write_text(dump_yaml(data) if pending is None else dump_resolved(data, pending), encoding="utf-8")


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _execute(python: Path, rerun_dir: Path) -> int:
    """The node entry, in the matching environment's interpreter: its output goes to stderr (stdout
    is the verdict's)."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run([str(python), "-m", "expyrun.node", str(rerun_dir)], stdout=sys.stderr,
                               env=environment, check=False)  # fmt: skip
    return completed.returncode


def _compare(run_dir: Path, rerun_dir: Path, record: dict[str, Any], rerun: dict[str, Any],
             comparison: Comparison) -> None:  # fmt: skip
    from expyrun.verify.compare import compare_metrics, compare_values

    if rerun.get("status") != record.get("status"):
        exception = rerun.get("exception") or {}
        why = f" ({exception.get('type')}: {exception.get('message')})" if exception else ""
        comparison.differs(key="status", run=record.get("status"), rerun=f"{rerun.get('status')}{why}")
        return
    compare_values(rerun.get("result"), record.get("result"), comparison)
    compare_metrics(rerun_dir, run_dir, comparison)


def _conclude(rerun_dir: Path, verdict: dict[str, Any], word: str, difference: dict[str, Any] | None) -> int:
    """Write `verdict.json`, print its line; the exit code."""
    verdict.update(verdict=word, difference=difference, checked_at=now())
    write_json_atomic(rerun_dir / VERDICT_FILE, verdict)
    write_json_atomic(rerun_dir.parent / LAST_VERDICT_FILE, verdict)  # for `list` and `show`
    line = describe(word, difference)
    sys.stdout.write(console.visible(f"{line}: {rerun_dir}", one_line=True) + "\n")
    return 0 if word in REPRODUCED else 1
