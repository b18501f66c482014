"""The configuration pipeline: config text -> merged raw config -> resolved config.

`resolve_config` is the only entry point other packages need: it reads the file and its parents,
applies command-line overrides, fills expyrun's defaults, interpolates and validates `__run__`.
"""

# No `from __future__ import annotations` here: typing.NamedTuple turns string annotations into
# ForwardRefs, compiling each (~15 us a field, at every launch); these evaluate as written.
import gc
import os
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from expyrun.config.inheritance import load_config
from expyrun.config.interpolation import DEFAULT_SECRETS, Interpolator, is_secret
from expyrun.config.overrides import Override, apply_overrides
from expyrun.config.provenance import Provenance
from expyrun.config.tree import Path, children, copy_tree, dotted, get, lookup, set_at
from expyrun.errors import ConfigError, did_you_mean

# `__trial__`: what a study trial suggested itself, in its config.yml (expyrun/current.py)
RESERVED_SECTIONS = ("__run__", "__optuna__", "__launch__", "__sweep__", "__trial__")
# Read (and removed) file by file by inheritance, so never seen at the root of a merged config.
FILE_SECTIONS = ("__default__", "__new_key_policy__")
RUN_KEYS = (
    "__main__", "__name__", "__output_dir__", "__code__", "__secrets__", "__max_file_mb__",
    "__command__", "__templates__", "__result__", "__ignore_exit_code__", "__python__", "__metrics__",
    "__tags__",
)  # fmt: skip
FUTURE_RUN_KEYS: tuple[str, ...] = ()  # in the specification, not in this version
MIN_SECRET_TEXT = 6  # shorter secrets are replaced only where a whole value equals them


class RunSection(NamedTuple):
    """The validated `__run__` section: a Python entry point (`main`) or a command (SPEC 10)."""

    main: str | None
    name: str
    output_dir: FsPath
    code: FsPath
    secrets: tuple[str, ...]
    max_file_mb: float
    command: tuple[str, ...] | None = None
    templates: tuple[str, ...] = ()
    result_file: str | None = None
    ignore_exit_code: bool = False
    python: FsPath | None = None  # another interpreter for `main`, or whose distributions a command's run freezes
    metrics: tuple[str, ...] = ()  # `__metrics__`: regular expressions matched against the run's output lines

    @property
    def is_command(self) -> bool:
        return self.command is not None

    @property
    def module(self) -> str:
        return (self.main or "").partition(":")[0]

    @property
    def function(self) -> str:
        return (self.main or "").partition(":")[2]


class ResolvedConfig:
    """A config ready to run: `raw` before interpolation, `values` after.

    (Plain classes rather than dataclasses on the launch path: `dataclasses` imports `inspect`,
    a tenth of what a whole launch may cost.)
    """

    def __init__(
        self,
        raw: dict,
        values: dict,
        provenance: Provenance,
        run: RunSection,
        warnings: list[str] | None = None,
        secret_paths: set[Path] | None = None,
        secret_values: dict[str, str] | None = None,
    ) -> None:
        self.raw = raw
        self.values = values
        self.provenance = provenance
        self.run = run
        self.warnings = warnings if warnings is not None else []
        self.secret_paths = secret_paths if secret_paths is not None else set()
        self.secret_values = secret_values if secret_values is not None else {}
        self.stored_pending: set[Path] | None = None  # read from a stored config: what it interpolated

    def config_text(self) -> str:
        """`config.yml`: the resolved values (secrets as references), marked as such (`dump_resolved`)."""
        from expyrun.config.dump import dump_resolved

        return dump_resolved(self.for_disk(), self.secret_paths)

    def raw_text(self) -> str:
        """`raw_config.yml`: the config before interpolation. Read from a stored `config.yml`, it is
        that file's values and is marked the same way, listing what it still interpolates."""
        from expyrun.config.dump import dump_resolved, dump_yaml

        if self.stored_pending is None:
            return dump_yaml(self.raw)
        return dump_resolved(self.raw, self.stored_pending | self.secret_paths)

    def for_disk(self) -> dict:
        """The resolved values as written to `config.yml`: secrets stay references."""
        written = copy_tree(self.values)
        for path in self.secret_paths:
            set_at(written, path, get(self.raw, path))
        return written

    def user_config_for_disk(self) -> dict:
        """The user config as `run.json` holds it: values that came from a secret stay references."""
        if not self.secret_paths:
            return self.user_config()
        return {key: value for key, value in self.for_disk().items() if key not in RESERVED_SECTIONS}

    def scrub(self, value: Any) -> Any:
        """`value` (a result, an exception) with the secrets it holds replaced by their `$NAME`.

        The entry point's values cannot be traced back to the environment, so a value equal to a
        secret is replaced whole (numbers included: `DB_PASSWORD=987654321`), and a secret's text
        inside a longer string only when it is long enough to be the secret and not a coincidence
        (`SHORT_TOKEN=a` must not turn `banana` into `b$SHORT_TOKENn...`).
        """
        if not self.secret_values:
            return value
        if isinstance(value, dict):
            return {key: self.scrub(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(item) for item in value]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return value
        text = value if isinstance(value, str) else repr(value)
        if text in self.secret_values:
            return self.secret_values[text]
        if isinstance(value, str):
            for secret, reference in self.secret_values.items():
                if len(secret) >= MIN_SECRET_TEXT:
                    value = value.replace(secret, reference)
        return value

    def user_config(self) -> dict:
        """What the entry point receives: everything but the reserved sections."""
        return {key: value for key, value in self.values.items() if key not in RESERVED_SECTIONS}

    def with_values(self, changes: Mapping[Path, Any]) -> "ResolvedConfig":
        """A new config with these values set, in `raw` and `values` alike; this one is not changed.

        A resolved config is never changed after resolution: it is shared (by a sweep's points, a
        study's trials, the run folder written from it). Only the sections along each changed path
        are copied, the rest is shared. Nothing is interpolated or validated again, and `run` (the
        validated `__run__`) stays: `prepare` writes `__run__.__code__: RUN_DIR` into the folder's
        `config.yml` (a rerun executes the snapshot) while this run still reads its code from `run.code`.
        """
        raw, values = dict(self.raw), dict(self.values)
        for path, value in changes.items():
            for tree in (raw, values):
                node = tree
                for key in path[:-1]:
                    node[key] = dict(node[key])
                    node = node[key]
                node[path[-1]] = value
        new = ResolvedConfig(raw, values, self.provenance, self.run, self.warnings, self.secret_paths,
                             self.secret_values)  # fmt: skip
        new.stored_pending = self.stored_pending
        return new


def resolve_config(
    config_file: str | os.PathLike,
    overrides: list[Override] = (),  # type: ignore[assignment]
    cwd: FsPath | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    """Read, merge, override, interpolate and validate a config.

    The cyclic garbage collector is paused meanwhile: building a large config allocates many
    containers and no cycles, and the collector's repeated full scans made the cost superlinear.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _resolve(config_file, overrides, cwd, environ)
    except RecursionError:  # a chain of thousands of references: one line, not a traceback
        raise ConfigError(f"{config_file}: references chain deeper than expyrun can follow") from None
    finally:
        if collecting:
            gc.enable()


def _resolve(
    config_file: str | os.PathLike,
    overrides: list[Override],
    cwd: FsPath | None,
    environ: Mapping[str, str] | None,
) -> ResolvedConfig:
    cwd = FsPath.cwd() if cwd is None else cwd
    environ = resolution_environ(cwd) if environ is None else environ
    loaded = load_config(config_file, cwd)
    raw = loaded.data
    provenance = Provenance(loaded.sources)
    provenance.stored_pending = _stored_pending(config_file, raw)
    provenance.cli_paths = apply_overrides(raw, overrides)
    _check_sections(raw, provenance)
    run_raw = _run_section(raw, str(config_file))
    _check_run_keys(run_raw, provenance)
    if "__code__" not in run_raw:
        run_raw["__code__"] = str(cwd)
        provenance.default_paths.add(("__run__", "__code__"))
    return interpolate(raw, provenance, cwd, environ, loaded.warnings)


def resolution_environ(cwd: FsPath) -> dict[str, str]:
    """The environment a config is resolved in, as expyrun 0.2.1 sets it before reading the config.

    Real configs write `data: $EXPYRUN_CWD/dataset`: the launch folder, never a stale exported value.
    `EXPYRUN_RUN_DIR` names a folder that does not exist yet, so it is not defined.
    """
    environ = dict(os.environ)
    environ["EXPYRUN_CWD"] = str(cwd)
    environ.pop("EXPYRUN_RUN_DIR", None)
    return environ


def interpolate(
    raw: dict, provenance: Provenance, cwd: FsPath, environ: Mapping[str, str], warnings: list[str]
) -> ResolvedConfig:
    """The second half of the pipeline, from a raw config: interpolate and validate `__run__`.

    A study calls it once per trial, on the raw config with the trial's values set.
    """
    secrets = _secret_patterns(raw["__run__"], provenance)
    interpolator = Interpolator(copy_tree(raw), environ, secrets, provenance.where)
    pending = _pending_paths(provenance)
    if pending is not None:  # a stored config: its values are final, except these
        interpolator.done.update(_settled_paths(raw, pending))
    values = interpolator.resolve_all()
    provenance.env_used = interpolator.env_used
    if ("__run__", "__name__") in interpolator.secret_paths:
        raise ConfigError(
            f"{provenance.where(('__run__', '__name__'))}: `__run__.__name__` uses a secret variable",
            "run names become folder names and are written everywhere: build the name from other values",
        )
    run = _validate_run(values["__run__"], provenance, cwd, secrets)
    all_warnings = list(dict.fromkeys(warnings + interpolator.warnings + _secrets_in_clear(provenance, interpolator)))
    for section in (raw, values):  # both files name absolute folders, as expyrun 0.2.1 does
        section["__run__"]["__output_dir__"] = str(run.output_dir)
        section["__run__"]["__code__"] = str(run.code)
    resolved = ResolvedConfig(
        raw, values, provenance, run, all_warnings, interpolator.secret_paths, interpolator.secret_values
    )
    resolved.stored_pending = pending
    return resolved


def _stored_pending(config_file: str | os.PathLike, raw: dict) -> set[Path] | None:
    """For a stored resolved config (a run's `config.yml`), the paths it still interpolates (its
    secrets), typed as the tree has them; None for a config to resolve."""
    from expyrun.config.dump import read_resolved_mark

    listed = read_resolved_mark(config_file)
    if listed is None:
        return None
    paths = set()
    for segments in listed:
        typed = lookup(raw, dotted(segments))
        if typed is not None:
            paths.add(typed[0])
    return paths


def _pending_paths(provenance: Provenance) -> set[Path] | None:
    """What a stored config interpolates: its secrets and the values set since it was read
    (command line, sweep point, trial); None for a config that is interpolated whole."""
    if provenance.stored_pending is None:
        return None
    return (
        provenance.stored_pending
        | provenance.cli_paths
        | provenance.sweep_paths
        | provenance.trial_paths
        | provenance.default_paths
    )


def _settled_paths(tree: dict, pending: set[Path]) -> set[Path]:
    """Every path of `tree` that is final: neither pending, below a pending path, nor above one
    (whose pending children still resolve). References into settled values read them as they are."""
    above = {path[:end] for path in pending for end in range(1, len(path))}
    settled: set[Path] = set()

    def visit(node: Any, prefix: Path) -> None:
        for segment, child in children(node):
            path = (*prefix, segment)
            if path in pending:
                continue
            if path not in above:
                settled.add(path)
            visit(child, path)

    visit(tree, ())
    return settled


def _run_section(raw: dict, display: str) -> dict:
    run = raw.get("__run__")
    if not isinstance(run, dict):
        raise ConfigError(
            f"{display}: no `__run__` section",
            "add __run__: {__main__: package.module:function, __name__: NAME, __output_dir__: DIR}",
        )
    if "__main__" in run and "__command__" in run:
        raise ConfigError(
            f"{display}: `__run__` names both `__main__` and `__command__`", "a run is a Python function or a command"
        )
    if "__main__" not in run and "__command__" not in run:
        raise ConfigError(f"{display}: `__run__.__main__` (or `__run__.__command__`) is required")
    if "__command__" in run and "__code__" not in run:
        raise ConfigError(
            f"{display}: `__run__.__code__` is required with `__command__`", "the folder of the scripts to snapshot"
        )
    for key in ("__name__", "__output_dir__"):
        if key not in run:
            raise ConfigError(f"{display}: `__run__.{key}` is required")
    return run


def _reserved_shape(key: object) -> bool:
    """A root key in expyrun's namespace (`__x__`, `__x_`, `_x__`): a typo of a section, not user data.

    Left unchecked, `__optuna_:` made a planned study run as one plain run, exit 0.
    """
    return isinstance(key, str) and (key.startswith("__") or (key.startswith("_") and key.endswith("__")))


def _bare(name: str) -> str:
    """A reserved name without its underscores, as names are compared for a did-you-mean."""
    return name.strip("_")


def _check_sections(raw: dict, provenance: Provenance) -> None:
    """Refuse a root key shaped like a reserved section that expyrun does not know."""
    known = (*RESERVED_SECTIONS, *FILE_SECTIONS)
    for key in raw:
        if _reserved_shape(key) and key not in RESERVED_SECTIONS:
            raise ConfigError(
                f"{provenance.where((key,))}: unknown section `{key}`",
                did_you_mean(
                    key,
                    known,
                    f"expyrun's sections are {', '.join(known)}; keys starting with `__` are reserved",
                    _bare,
                ),
            )


def _check_run_keys(run: dict, provenance: Provenance) -> None:
    """Refuse a `__run__` key expyrun does not read: a misspelt `__name__` would be ignored silently."""
    for key in run:
        if key == "__tags__":
            from expyrun.config.tags import check_launch_tags

            check_launch_tags(run[key], provenance.where(("__run__", key)))
        if key in RUN_KEYS:
            continue
        where = provenance.where(("__run__", key))
        if key in FUTURE_RUN_KEYS:
            raise ConfigError(f"{where}: `__run__.{key}` is not supported by this version of expyrun")
        raise ConfigError(
            f"{where}: unknown key `__run__.{key}`",
            did_you_mean(str(key), RUN_KEYS, f"`__run__` keys are {', '.join(RUN_KEYS)}", _bare),
        )


def _check_name_parts(parts: tuple[str, ...], where: str) -> None:
    """Names that would hide a run in expyrun's own folder or that no file system can hold."""
    if parts and parts[0] == ".expyrun":
        raise ConfigError(f"{where}: `__run__.__name__` may not start with `.expyrun/` (expyrun's own folder)")
    for part in parts:
        if len(os.fsencode(part)) > 255:
            raise ConfigError(
                f"{where}: `__run__.__name__` has a component of {len(os.fsencode(part))} bytes: {part[:40]}...",
                "a folder name holds at most 255 bytes",
            )


def _secrets_in_clear(provenance: Provenance, interpolator: Interpolator) -> list[str]:
    """Command-line values for keys named like secrets: they are written in clear, say so."""
    warnings = []
    for path in sorted(provenance.cli_paths, key=str):
        last = path[-1] if path else ""
        named_like_secret = isinstance(last, str) and is_secret(last, interpolator.secret_patterns)
        if named_like_secret and path not in interpolator.secret_paths:
            warnings.append(
                f"--{dotted(path)}: looks like a secret (matches `__run__.__secrets__`) but is given in clear: "
                f"it is written to config.yml and run.json; pass it as an environment variable instead "
                f"(--{dotted(path)} '${str(last).upper()}')"
            )
    return warnings


def _secret_patterns(run_raw: dict, provenance: Provenance) -> tuple[str, ...]:
    patterns = run_raw.get("__secrets__", list(DEFAULT_SECRETS))
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        where = provenance.where(("__run__", "__secrets__"))
        raise ConfigError(f"{where}: `__run__.__secrets__` must be a list of glob patterns")
    return tuple(patterns)


def _is_entry_point(text: str) -> bool:
    """`package.module:function`, each name an ASCII identifier (read with str methods: the pattern
    that said this cost every launch 0.1 ms to compile)."""
    module, colon, function = text.partition(":")
    names = [*module.split("."), function]
    return bool(colon) and text.isascii() and all(name.isidentifier() for name in names)


def _validate_run(run: dict, provenance: Provenance, cwd: FsPath, secrets: tuple[str, ...]) -> RunSection:
    def text(key: str) -> str:
        value = run[key]
        if not isinstance(value, str) or not value:
            where = provenance.where(("__run__", key))
            raise ConfigError(f"{where}: `__run__.{key}` must be a non-empty string, got {value!r}")
        return value

    main = None
    if "__main__" in run:
        main = text("__main__")
        if not _is_entry_point(main):
            raise ConfigError(
                f"{provenance.where(('__run__', '__main__'))}: `__run__.__main__` is {main!r}",
                "write it as package.module:function",
            )
    name = text("__name__")
    parts = FsPath(name).parts
    if FsPath(name).is_absolute() or ".." in parts or name.startswith("~"):
        raise ConfigError(
            f"{provenance.where(('__run__', '__name__'))}: `__run__.__name__` {name!r} must stay inside "
            "the output folder",
            "use a relative name without `..`",
        )
    _check_name_parts(parts, provenance.where(("__run__", "__name__")))
    max_file_mb = run.get("__max_file_mb__", 10)
    if isinstance(max_file_mb, bool) or not isinstance(max_file_mb, (int, float)) or max_file_mb <= 0:
        where = provenance.where(("__run__", "__max_file_mb__"))
        raise ConfigError(f"{where}: `__run__.__max_file_mb__` must be a positive number")
    from expyrun.config.run_options import command_options, metric_patterns

    return RunSection(
        main,
        name,
        (cwd / FsPath(text("__output_dir__")).expanduser()).resolve(),
        (cwd / FsPath(text("__code__")).expanduser()).resolve(),
        secrets,
        float(max_file_mb),
        *command_options(run, provenance.where, cwd),
        metric_patterns(run, provenance.where),
    )
