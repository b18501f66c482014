"""`run.json`, the run's record, has one owner: this module. Nothing else writes the file.

Why one owner: a run folder is prepared and executed by a forked child, reused workers, an inline
trial or a Slurm node, and each used to compose the record by hand. Here are its fields
(`RunRecord`), its version (`SCHEMA_VERSION`), its three moments (`start_record` when the folder is
prepared, `mark_started`, `mark_finished`/`mark_outcome`) and its one writer (`write_record`, temp
file + rename: a reader never sees half a file) and reader (`load_record`, which trusts no shape).
The JSON helpers (`to_json`, `write_json_atomic`) are shared with the owners of `sweep.json` and
`study.json`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun.run.status import Status

if TYPE_CHECKING:
    from typing import TypedDict

    from expyrun.run.outcome import Outcome

RUN_FILE = "run.json"
SCHEMA_VERSION = 2
"""The version of `run.json`'s layout; a record without `schema_version` is version 1 (written
before versions were recorded: the same fields, less `schema_version`)."""


def now() -> str:
    """The local time in ISO 8601 with milliseconds and the zone offset (`datetime` costs a launch
    more to import than this takes)."""
    seconds = time.time()
    local = time.localtime(seconds)
    offset = local.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    millis = int(seconds % 1 * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}.{millis:03d}{sign}{hours:02d}:{minutes:02d}"


_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str, allow_nan=False).encode


def to_json(data: Any, indent: int | None = 2) -> str:
    """`data` as strict JSON: NaN and infinities become strings (most readers refuse them).

    With `indent`, a mapping is written one member per line, each value compact: as readable as
    a record needs, and encoded by the C encoder (an indented dump uses the pure-Python one).
    """
    try:
        return _members(data) if indent and isinstance(data, dict) else _ENCODE(data)
    except ValueError:  # NaN or infinity somewhere
        data = finite(data)
        return _members(data) if indent and isinstance(data, dict) else _ENCODE(data)


def _members(data: dict[str, Any]) -> str:
    if not data:
        return "{}"
    return "{\n" + ",\n".join(f"  {_ENCODE(str(key))}: {_ENCODE(value)}" for key, value in data.items()) + "\n}"


def write_json_atomic(path: Path, data: dict[str, Any], extra: str | None = None) -> None:
    """Write `data` as JSON (temp file + rename); a reader never sees half a file.

    `extra`: a last member already encoded (`"key": value`), spliced in as it is: a large value
    written many times (a run's config) is encoded once, compactly, by the C encoder.
    """
    text = to_json(data)
    if extra is not None:
        text = f"{text[:-2]},\n  {extra}\n}}" if data else f"{{\n  {extra}\n}}"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float written as the string Python prints (`nan`, `inf`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def host_name() -> str:
    return os.uname().nodename


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or str(os.getuid())


def _platform() -> str:
    """`platform.platform()`'s answer on Linux without its cost (it scans the interpreter binary)."""
    system = os.uname()
    text = f"{system.sysname}-{system.release}-{system.machine}"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    return f"{text}-with-{libc.replace(' ', '')}" if libc else text


# A type for mypy and for readers of this module, not a runtime class: typing turns each of its string
# annotations into a ForwardRef by compiling it, ~0.4 ms of every launch for 32 fields.
if TYPE_CHECKING:

    class RunRecord(TypedDict, total=False):
        """`run.json`, as this module writes it (every field may be `null` until known).

        Written in three moments, each a function here: `start_record` (the folder is prepared: the
        record says `queued`), `mark_started` (`running`: pid, GPU, host, start time) and `mark_finished`
        (ended: status, exit code, result, exception, duration, log error); `write_record` is the only
        writer of the file. Sweep and study membership are fields: `sweep` (dir, point, overrides,
        variant) on a sweep point, `trial` (study, number, params, state, values...) on a trial, `study`
        on a study's own run. Readers take records through `load_record`, without trusting their shape.
        """

        schema_version: int
        status: str  # a `Status` value
        name: str
        run_dir: str
        debug: bool
        argv: list[str]
        cwd: str
        host: str
        user: str
        pid: int | None
        python: dict[str, str]
        platform: str
        expyrun_version: str
        started_at: str | None
        ended_at: str | None
        duration_s: float | None
        exit_code: int | None
        exception: dict[str, str] | None
        result: Any
        git: dict[str, Any] | None
        snapshot: dict[str, Any] | None
        launcher: str  # local, slurm or ray (SPEC 3.1)
        attempt: int | None  # a Slurm node's attempt (null: submitted, not started yet)
        gpu: str
        log_error: str
        config: dict[str, Any]
        rerun_of: str
        sweep: dict[str, Any]
        trial: dict[str, Any]
        batch: dict[str, Any]
        study: str
        slurm: dict[str, Any]


def schema_version(record: MutableMapping[str, Any]) -> int:
    """The layout version of a record read back (1: written before versions were recorded)."""
    version = record.get("schema_version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def start_record(
    name: str,
    run_dir: Path,
    debug: bool,
    argv: list[str],
    cwd: Path,
    status: Status = Status.QUEUED,
    launcher: str = "local",
) -> dict[str, Any]:
    """The record of a run folder just prepared (`queued`); the rest is filled as the run goes.

    `launcher` says where the run executes (SPEC 3.1: local, slurm or ray). `attempt` is 1: a folder
    is executed again only by a Slurm node, whose submission records `null` (no attempt yet) and
    where each attempt counts one more.
    """
    from expyrun import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "name": name,
        "run_dir": str(run_dir),
        "debug": debug,
        "argv": argv,
        "cwd": str(cwd),
        "host": host_name(),
        "user": _user(),
        "pid": os.getpid(),
        "python": {"version": sys.version.split()[0], "executable": sys.executable},
        "platform": _platform(),
        "expyrun_version": __version__,
        "started_at": now(),
        "ended_at": None,
        "duration_s": None,
        "exit_code": None,
        "exception": None,
        "result": None,
        "git": None,
        "snapshot": None,
        "launcher": launcher,
        "attempt": 1,
    }


def mark_started(record: MutableMapping[str, Any], pid: int, gpu: str | None = None) -> None:
    """The run has started (`running`) in the process `pid` (whose end `list` notices: died), with
    the GPU it was given."""
    record.update(status=Status.RUNNING, pid=pid, started_at=now())
    if gpu is not None:
        record["gpu"] = gpu


def mark_finished(
    record: MutableMapping[str, Any],
    status: Status,
    exit_code: int | None,
    *,
    duration_s: float | None = None,
    result: Any = None,
    exception: dict[str, str] | None = None,
    log_error: str | None = None,
) -> None:
    """The run has ended: its status, end time, exit code, result and exception (already scrubbed of
    secrets by the caller, who holds the config); `duration_s` None: it never started here."""
    if log_error is not None:
        record["log_error"] = log_error
    record.update(
        status=Status(status),
        ended_at=now(),
        duration_s=None if duration_s is None else round(duration_s, 3),
        exit_code=exit_code,
        exception=exception,
        result=result,
    )


def mark_outcome(record: MutableMapping[str, Any], outcome: Outcome, duration_s: float | None) -> None:
    """`mark_finished` with what an executor returned."""
    mark_finished(record, outcome.status, outcome.exit_code, duration_s=duration_s, result=outcome.result,
                  exception=outcome.exception, log_error=outcome.log_error)  # fmt: skip


def encode_config(config: Any) -> str:
    """The `config` member of a record, encoded once (compact): a large config rewritten with each
    moment of the record is not encoded again each time (see `write_record`)."""
    return '"config": ' + to_json(config, indent=None)


def write_record(run_dir: Path | str, record: MutableMapping[str, Any], config_json: str | None = None) -> None:
    """Write `run_dir/run.json` (temp file + rename): the only writer of the file.

    `config_json`: the record's `config` already encoded by `encode_config` (written last, as it is).
    """
    path = Path(run_dir) / RUN_FILE
    if config_json is None:
        write_json_atomic(path, dict(record))
    else:
        rest = {key: value for key, value in record.items() if key != "config"}
        write_json_atomic(path, rest, extra=config_json)


# The fields readers of a record use, with the types expyrun writes them in (None is always allowed).
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "status": str, "name": str, "started_at": str, "ended_at": str, "duration_s": (int, float),
    "git": dict, "trial": dict, "config": dict, "pid": int, "host": str, "study": str, "snapshot": dict,
    "schema_version": int,
}  # fmt: skip


def load_record(run_dir: Path | str) -> dict[str, Any] | None:
    """The run.json of a folder; None when there is none, `{}` when it is unreadable or not a JSON object.

    Any folder may hold a `run.json` that expyrun did not write (another tool's, a damaged or crafted
    file): it is read without trusting its shape. A run costs one open and no other system call.
    """
    try:
        fd = os.open(os.path.join(run_dir, RUN_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 1 << 16)
        if len(data) == 1 << 16:  # a large record: read the rest
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        record = json.loads(data)
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested 100,000 levels deep
        return {}
    finally:
        os.close(fd)
    return record if isinstance(record, dict) else {}


def record_problem(record: dict[str, Any]) -> str | None:
    """Why a run.json is not one expyrun wrote (a foreign or damaged file), or None when it fits."""
    if not record:
        return "not a JSON object"
    for key, kind in _FIELD_TYPES.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"`{key}` is a {type(value).__name__}"
    return None
