"""The `__launch__` section: where and how runs execute, validated before anything is created.

`__optuna__.n_jobs` is the same knob as `__launch__.jobs` (studies written for expyrun 1.0 use
the former); giving both with different values is an error rather than a silent choice. The
`slurm` section is validated by `expyrun.execute.slurm_options`, imported only for `launcher: slurm`.
"""

# No `from __future__ import annotations` here: typing.NamedTuple turns string annotations into
# ForwardRefs, compiling each (~15 us a field, at every launch); these evaluate as written.
import os
from typing import Any, NamedTuple

from expyrun.errors import ConfigError, did_you_mean

LAUNCHERS = ("local", "slurm", "ray")
_KNOWN = ("launcher", "jobs", "gpus", "workers", "slurm", "wait", "reuse_workers", "ray")


class LaunchSpec(NamedTuple):
    """How many runs execute at once, on which GPUs, by how many worker processes."""

    launcher: str = "local"
    jobs: int = 1
    gpus: tuple[str, ...] | None = None  # ids for CUDA_VISIBLE_DEVICES, one per executing run; None: untouched
    workers: int = 1
    wait: bool = False
    slurm: Any = None  # SlurmOptions with `launcher: slurm`
    gpus_auto: bool = False  # `gpus: auto` on Slurm: detected on the node, not where expyrun submits
    reuse_workers: bool = False  # a sweep's points in reused worker processes (entry module imported once each)
    ray: Any = None  # RayOptions with `launcher: ray` (execute/ray_options.py)

    @property
    def slots(self) -> int:
        """Runs that may execute at once: `jobs`, and never more than one per GPU."""
        return self.jobs if self.gpus is None else min(self.jobs, len(self.gpus))


def _err(key: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"`__launch__.{key}`: {message}", hint)


def _positive_int(section: dict[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _err(key, f"expected a positive integer, got {value!r}")
    return value


def parse_launch(section: Any, optuna_section: Any = None, on_node: bool = False) -> LaunchSpec:
    """Validate `__launch__` (resolved values); `optuna_section` for its `n_jobs` alias.

    `on_node`: a Slurm job executing its prepared folder: the runs execute here, as a local launch
    would, and `gpus: auto` reads what Slurm made visible to the job.
    """
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"`__launch__` must be a mapping, got {section!r}")
    unknown = sorted(set(section) - set(_KNOWN))
    if unknown:
        raise _err(unknown[0], "unknown setting", did_you_mean(unknown[0], _KNOWN))
    launcher = section.get("launcher") or "local"
    if launcher not in LAUNCHERS:
        hint = did_you_mean(str(launcher), LAUNCHERS)
        raise _err("launcher", f"expected local, slurm or ray, got {launcher!r}", hint)
    jobs = _positive_int(section, "jobs", 1)
    n_jobs = optuna_section.get("n_jobs") if isinstance(optuna_section, dict) else None
    if n_jobs is not None:
        if section.get("jobs") is not None and n_jobs != jobs:
            raise _err(
                "jobs",
                f"{jobs} but `__optuna__.n_jobs` is {n_jobs!r}: they are the same setting",
                "keep one of them",
            )
        jobs = _positive_int({"n_jobs": n_jobs}, "n_jobs", 1)
    wait = section.get("wait", False)
    if not isinstance(wait, bool):
        raise _err("wait", f"expected true or false, got {wait!r}")
    reuse_workers = section.get("reuse_workers", False)
    if not isinstance(reuse_workers, bool):
        raise _err("reuse_workers", f"expected true or false, got {reuse_workers!r}")
    if reuse_workers and optuna_section is not None:
        raise _err(
            "reuse_workers", "is for sweeps: a study's trials already run in reused workers",
            "remove it (`__optuna__.isolation` chooses how trials run)",
        )  # fmt: skip
    if reuse_workers and launcher != "local":
        raise _err("reuse_workers", f"is for local sweeps, not `launcher: {launcher}`")
    slurm, gpus_auto = None, False
    if launcher == "slurm" and not on_node:
        from expyrun.execute.slurm_options import parse_slurm

        slurm = parse_slurm(section.get("slurm"))
        gpus_auto = section.get("gpus") == "auto"
    ray: Any = None
    gpus: tuple[str, ...] | None = None
    if launcher == "ray" and on_node:  # the GPUs Ray gave this task (CUDA_VISIBLE_DEVICES): all for its one run
        gpus = (",".join(detect_gpus()),) if os.environ.get("CUDA_VISIBLE_DEVICES") else None
    elif launcher == "ray":
        from expyrun.execute.ray_options import parse_ray

        ray = parse_ray(section.get("ray"))
    elif not gpus_auto:
        gpus = _gpus(section.get("gpus"))
    return LaunchSpec(
        launcher="local" if on_node else launcher,
        jobs=jobs,
        gpus=gpus,
        workers=_positive_int(section, "workers", 1),
        wait=wait,
        slurm=slurm,
        gpus_auto=gpus_auto,
        reuse_workers=reuse_workers,
        ray=ray,
    )


def _gpus(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if value == "auto":
        found = detect_gpus()
        if not found:
            raise _err(
                "gpus",
                "auto found no GPU (CUDA_VISIBLE_DEVICES is not set and nvidia-smi -L lists none)",
                "remove `gpus` to run without assigning GPUs, or list ids: gpus: [0, 1]",
            )
        twice = _listed_twice(found)
        if twice is not None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise _err(
                "gpus", f"auto: CUDA_VISIBLE_DEVICES={visible} lists GPU {twice} twice: one GPU runs one run at a time"
            )
        return found
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(v, bool) or not isinstance(v, (int, str)) for v in value)
    ):
        raise _err("gpus", f"expected auto or a list of GPU ids such as [0, 1], got {value!r}")
    ids = tuple(str(v).strip() for v in value)
    if any(not part.strip() for entry in ids for part in entry.split(",")):
        raise _err("gpus", f"an empty id in {value!r}", 'a run\'s GPUs are written `"0,1"`')
    twice = _listed_twice(ids)
    if twice is not None:
        raise _err("gpus", f"an id is listed twice in {value!r} (GPU {twice}): one GPU runs one run at a time")
    return ids


def _listed_twice(ids: tuple[str, ...]) -> str | None:
    """A GPU id that two entries share (an entry `"0,1"` gives one run two GPUs), if any: the runs
    given those entries would execute on one GPU at once."""
    seen: set[str] = set()
    for entry in ids:
        for part in (part.strip() for part in entry.split(",")):
            if part in seen:
                return part
            seen.add(part)
    return None


def detect_gpus() -> tuple[str, ...]:
    """The GPUs this process may use: an already-set `CUDA_VISIBLE_DEVICES`, else what nvidia-smi lists."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1")
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(str(i) for i, line in enumerate(listed.stdout.splitlines()) if line.startswith("GPU "))
