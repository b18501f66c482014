"""`__launch__.slurm`: how each Slurm job is asked for, validated before anything is created.

Imported only when `launcher: slurm` is chosen, so a local launch never pays for it. Every key
is checked (unknown ones with a did-you-mean), and `options` may not set again what a key of
its own sets: two places for the time limit would make the job script lie about one of them.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from expyrun.errors import ConfigError, did_you_mean

DEFAULTS: dict[str, Any] = {
    "partition": None,
    "time": "01:00:00",
    "cpus_per_task": 1,
    "gpus_per_task": 0,
    "mem": None,
    "array_parallelism": None,
    "requeue": True,
    "max_attempts": 3,
    "signal_grace_s": 120,
    "options": {},
    "setup": [],
}
# sbatch options expyrun writes itself (from the keys above, or because it needs them as they are).
_OWN = {
    "partition": "partition", "time": "time", "t": "time", "cpus-per-task": "cpus_per_task", "c": "cpus_per_task",
    "gpus-per-task": "gpus_per_task", "mem": "mem", "array": "array_parallelism", "a": "array_parallelism",
    "signal": "signal_grace_s", "requeue": "requeue", "no-requeue": "requeue", "parsable": None, "hold": None,
    "wrap": None, "p": "partition",
}  # fmt: skip
_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}|\d+-\d+|UNLIMITED|INFINITE", re.IGNORECASE)
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class SlurmOptions(NamedTuple):
    """The validated `__launch__.slurm` section (see SPEC 8 for what each key means)."""

    partition: str | None = None
    time: str = "01:00:00"
    cpus_per_task: int = 1
    gpus_per_task: int = 0
    mem: str | None = None
    array_parallelism: int | None = None
    requeue: bool = True
    max_attempts: int = 3
    signal_grace_s: int = 120
    options: dict[str, str | None] = {}  # noqa: RUF012 (sbatch long option -> value; None: a flag)
    setup: tuple[str, ...] = ()


def _err(key: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"`__launch__.slurm.{key}`: {message}", hint)


def _int(section: dict[str, Any], key: str, minimum: int, optional: bool = False) -> int | None:
    value = section.get(key, DEFAULTS[key])
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise _err(key, f"expected {expected}{' or null' if optional else ''}, got {value!r}")
    return value


def _text(section: dict[str, Any], key: str) -> str | None:
    value = section.get(key, DEFAULTS[key])
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise _err(key, f"expected a string, got {value!r}")
    text = str(value).strip()
    if any(ch.isspace() for ch in text):
        raise _err(key, f"expected one word, got {value!r}")
    return text


def parse_slurm(section: Any) -> SlurmOptions:
    """Validate `__launch__.slurm` (resolved values); missing keys take SPEC 8's defaults."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"`__launch__.slurm` must be a mapping, got {section!r}")
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        hint = did_you_mean(
            unknown[0].replace("-", "_"), DEFAULTS, "other sbatch options go in `options: {name: value}`"
        )
        raise _err(unknown[0], "unknown setting", hint)
    time = _text(section, "time") or DEFAULTS["time"]
    if not _TIME.fullmatch(time):
        raise _err("time", f"expected a Slurm time such as 01:00:00, 2-00:00:00 or 30 (minutes), got {time!r}")
    requeue = section.get("requeue", True)
    if not isinstance(requeue, bool):
        raise _err("requeue", f"expected true or false, got {requeue!r}")
    return SlurmOptions(
        partition=_text(section, "partition"),
        time=time,
        cpus_per_task=_int(section, "cpus_per_task", 1) or 1,
        gpus_per_task=_int(section, "gpus_per_task", 0) or 0,
        mem=_text(section, "mem"),
        array_parallelism=_int(section, "array_parallelism", 1, optional=True),
        requeue=requeue,
        max_attempts=_int(section, "max_attempts", 1) or 1,
        signal_grace_s=_int(section, "signal_grace_s", 0) or 0,
        options=_options(section.get("options")),
        setup=_setup(section.get("setup")),
    )


def _options(value: Any) -> dict[str, str | None]:
    """`{account: lab, mail_type: END, exclusive: true}` -> `--account=lab --mail-type=END --exclusive`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err("options", f"expected a mapping of sbatch options, such as {{account: lab}}, got {value!r}")
    options: dict[str, str | None] = {}
    for key, item in value.items():
        name = str(key).lstrip("-")
        if not _OPTION.fullmatch(name):
            raise _err(f"options.{key}", "not an sbatch option name")
        name = name.replace("_", "-")
        if name in _OWN:
            own = _OWN[name]
            hint = f"set `__launch__.slurm.{own}` instead" if own else "expyrun sets it itself"
            raise _err(f"options.{key}", f"--{name} is written by expyrun", hint)
        if item is False or item is None:
            continue
        if item is True:
            options[name] = None
        elif isinstance(item, (str, int, float)) and "\n" not in str(item):
            options[name] = str(item)
        else:
            raise _err(f"options.{key}", f"expected a string, a number or true, got {item!r}")
    return options


def _setup(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or any(not isinstance(line, str) for line in value):
        raise _err("setup", f"expected a list of shell lines, got {value!r}")
    return tuple(value)
