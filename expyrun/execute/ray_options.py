"""The `__launch__.ray` section (`launcher: ray`, SPEC 8.1), validated before anything is created.

Imports nothing of Ray (a config is checked, and `--dry-run` works, where Ray is not installed):
checking the section against the cluster (is there one at `address`, does a node offer the
resources) is `execute/ray_submit.py`'s, once Ray is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from expyrun.errors import ConfigError, did_you_mean

_KNOWN = ("address", "num_cpus", "num_gpus", "resources", "runtime_env", "max_retries")


class RayOptions(NamedTuple):
    """What each run's Ray task asks for, and where the cluster is."""

    address: str = "auto"  # auto: RAY_ADDRESS or the running local cluster; local: a private Ray; ray://: Ray Client
    num_cpus: float = 1
    num_gpus: float = 0
    resources: Mapping[str, float] = {}  # never mutated
    runtime_env: Mapping[str, Any] = {}  # passed to Ray as is; never mutated
    max_retries: int = 3  # executions again of a task whose worker process or node died

    def task_options(self) -> dict[str, Any]:
        """The keyword arguments of `ray.remote(...).options(...)` for one run's task."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                   "max_retries": self.max_retries, "retry_exceptions": False}  # fmt: skip
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.runtime_env:
            options["runtime_env"] = dict(self.runtime_env)
        return options


def _err(key: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"`__launch__.ray.{key}`: {message}", hint)


def _amount(section: dict[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _err(key, f"expected a number >= 0, got {value!r}")
    return value


def parse_ray(section: Any) -> RayOptions:
    """Validate `__launch__.ray` (resolved values): unknown keys are refused with a did-you-mean."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"`__launch__.ray` must be a mapping, got {section!r}")
    unknown = sorted(set(section) - set(_KNOWN))
    if unknown:
        raise _err(unknown[0], "unknown setting", did_you_mean(unknown[0], _KNOWN))
    address = section.get("address") or "auto"
    if not isinstance(address, str):
        raise _err("address", f"expected auto, local, host:port or ray://host:port, got {address!r}")
    resources = section.get("resources") or {}
    if not isinstance(resources, dict) or any(
        not isinstance(name, str) or isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0
        for name, n in resources.items()
    ):
        raise _err("resources", f"expected a mapping of resource names to amounts, got {resources!r}")
    if {"CPU", "GPU"} & set(resources):
        raise _err("resources", "CPU and GPU are asked with num_cpus and num_gpus")
    runtime_env = section.get("runtime_env") or {}
    if not isinstance(runtime_env, dict):
        raise _err("runtime_env", f"expected a mapping (env_vars, working_dir, pip, ...), got {runtime_env!r}")
    retries = section.get("max_retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise _err("max_retries", f"expected an integer >= 0, got {retries!r}")
    return RayOptions(address, _amount(section, "num_cpus", 1), _amount(section, "num_gpus", 0),
                      dict(resources), dict(runtime_env), retries)  # fmt: skip
