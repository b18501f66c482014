"""Preparing a run folder: allocate it, write both configs, snapshot the code, write `run.json`.

Preparation is all or nothing: if any step fails (disk full, a folder that cannot be made,
Ctrl-C during a long snapshot) the run folder and the parents made for it are removed again,
so a launch refused before the run started leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.config import ResolvedConfig, RunSection
from expyrun.errors import UsageError
from expyrun.run.entry_point import top_level_path
from expyrun.run.folder import allocate_run_dir, discard_run_dir, missing_parents, remove_created
from expyrun.run.record import RUN_FILE, encode_config, start_record, write_record
from expyrun.run.status import Status

if TYPE_CHECKING:
    from expyrun.run.git_state import GitProbe
    from expyrun.run.snapshot import Snapshot

RESERVE_FILE = ".expyrun-reserve"
CODE_FOLDER = "code"  # where a command run's whole `__code__` folder is copied
STORE_FOLDER = Path(".expyrun") / "store"  # the snapshot store, beside the runs


class PreparedRun:
    """A run folder ready to execute: its resolved config and its record so far."""

    def __init__(self, resolved: ResolvedConfig, run_dir: Path, record: dict[str, Any], debug: bool) -> None:
        self.resolved = resolved
        self.run_dir = run_dir
        self.record = record
        self.debug = debug
        self.snapshot: Snapshot | None = None  # what was copied: a sweep's later points clone it
        self._config_json: str | None = None

    @property
    def launch_cwd(self) -> Path:
        """Where expyrun was launched (`EXPYRUN_CWD` of the run)."""
        return Path(self.record["cwd"])

    @property
    def import_root(self) -> Path:
        """Where the entry point is imported from: the snapshot, or `__code__` in debug."""
        return self.resolved.run.code if self.debug else self.run_dir

    def write_record(self) -> None:
        """Rewrite `run.json`; the config in it (possibly large) is encoded once."""
        if self._config_json is None:
            self._config_json = encode_config(self.record.get("config"))
        write_record(self.run_dir, self.record, self._config_json)

    def release_reserve(self) -> None:
        """Free the space kept for the final record (a run that filled the disk can still be recorded)."""
        with contextlib.suppress(OSError):
            os.unlink(self.run_dir / RESERVE_FILE)


def snapshot_source(run: RunSection) -> Path:
    """What a run's snapshot copies: the entry point's top-level package, or a command run's `__code__`."""
    return run.code if run.is_command else top_level_path(run.code, run.module)


def run_base(resolved: ResolvedConfig, debug: bool) -> Path:
    run = resolved.run
    return run.output_dir / "DEBUG" / run.name if debug else run.output_dir / run.name


def prepare_run(
    resolved: ResolvedConfig,
    debug: bool,
    argv: list[str],
    cwd: Path,
    record_fields: dict[str, Any] | None = None,
    git: GitProbe | None = None,
    clone_of: PreparedRun | None = None,
) -> PreparedRun:
    """A new run folder holding configs, snapshot and `run.json`; nothing is left when this raises."""
    base = run_base(resolved, debug)
    created = missing_parents(base)
    store = resolved.run.output_dir / STORE_FOLDER
    store_created = [] if debug else missing_parents(store)
    try:
        run_dir = allocate_run_dir(base)
    except OSError as error:
        message = f"`__run__.__output_dir__`: cannot create a run folder under {base}: {error.strerror}"
        raise UsageError(message) from None
    try:
        return _fill(resolved, run_dir, debug, argv, cwd, record_fields or {}, git, clone_of)
    except BaseException as error:
        discard_run_dir(run_dir, created)
        if store_created:  # a store this launch began holds nothing another run needs
            import shutil

            shutil.rmtree(store, ignore_errors=True)
            remove_created(store_created)
        if isinstance(error, OSError):
            where = f" ({error.filename})" if error.filename else ""
            raise UsageError(f"cannot prepare the run folder {run_dir}: {error.strerror}{where}") from None
        raise


def _fill(
    resolved: ResolvedConfig,
    run_dir: Path,
    debug: bool,
    argv: list[str],
    cwd: Path,
    fields: dict[str, Any],
    git: GitProbe | None,
    clone_of: PreparedRun | None,
) -> PreparedRun:
    run = resolved.run
    original_code = run.code
    if run.is_command:  # `{__run__.__code__}` in the command and templates names the copy (--debug: the
        # original, absolute: the command runs in the run folder)
        resolved = _with_code(resolved, original_code if debug else run_dir / CODE_FOLDER, cwd)
    elif not debug:  # config.yml names the run folder (a rerun executes the snapshot); a new config
        resolved = resolved.with_values({("__run__", "__code__"): str(run_dir)})
    (run_dir / "raw_config.yml").write_text(resolved.raw_text(), encoding="utf-8")
    (run_dir / "config.yml").write_text(resolved.config_text(), encoding="utf-8")
    record = start_record(run.name, run_dir, debug, argv, cwd, status=Status.QUEUED)
    record["config"] = resolved.user_config_for_disk()  # for `expyrun list`, without parsing YAML
    from expyrun.config.explain import origins

    record["provenance"] = origins(resolved)  # SPEC 12.3: where each value came from, for `diff`
    tags = resolved.values["__run__"].get("__tags__")  # (checked with the config)
    if tags:  # track.annotations imports dataclasses: ~4 ms that a launch without tags does not pay
        from expyrun.track.annotations import write_launch_tags

        write_launch_tags(run_dir, tags)
    record.update(fields)
    _note_rerun(record, original_code)
    if not debug and clone_of is not None and clone_of.snapshot is not None:
        from expyrun.run.snapshot import clone_snapshot

        clone_snapshot(clone_of.snapshot, clone_of.run_dir, run_dir)
        record["snapshot"] = clone_of.record["snapshot"]
        snapshot = clone_of.snapshot
    elif not debug:
        from expyrun.run.snapshot import take_snapshot

        source = snapshot_source(run._replace(code=original_code))
        ignored = git.ignored() if git is not None else None
        store = run.output_dir / STORE_FOLDER
        name = CODE_FOLDER if run.is_command else None
        snapshot = take_snapshot(source, run_dir, store, run.max_file_mb, run.output_dir, ignored, name=name)
        record["snapshot"] = snapshot.as_record()
        for skipped in snapshot.skipped:
            console.warning(f"snapshot: {skipped} is larger than {run.max_file_mb:g} MB; not copied")
        for loop in snapshot.loops:
            console.warning(f"snapshot: {loop} links back to a folder being copied; not followed")
    if run.templates:
        from expyrun.run.templates import render_templates

        source = run_dir / CODE_FOLDER if run.is_command and not debug else original_code
        render_templates(resolved, source, into=run_dir)
    if run.python is not None:
        from expyrun.run.command import interpreter_info

        record["python"] = interpreter_info(run.python)
    prepared = PreparedRun(resolved, run_dir, record, debug)
    prepared.snapshot = None if debug else snapshot
    prepared.write_record()
    reserve_space(run_dir / RESERVE_FILE, (run_dir / RUN_FILE).stat().st_size + 16 * 1024)
    return prepared


def _note_rerun(record: dict[str, Any], code: Path) -> None:
    """`rerun_of`: the earlier run whose snapshot this run executes (a stored config run again);
    its git state, not today's HEAD, is the state of the code that runs (`GitProbe`)."""
    from expyrun.run.git_state import origin_run

    origin = origin_run(code)
    if origin is not None:
        record["rerun_of"] = str(origin)


def _with_code(resolved: ResolvedConfig, code: Path, cwd: Path) -> ResolvedConfig:
    """The config resolved again with `__run__.__code__` naming `code` (the run folder's copy); a new
    config: `resolved` (which a sweep's other points share) is not changed."""
    from expyrun.config.resolve import interpolate, resolution_environ

    raw = resolved.with_values({("__run__", "__code__"): str(code)}).raw
    return interpolate(raw, resolved.provenance.copy(), cwd, resolution_environ(cwd), [])


def reserve_space(path: Path, size: int) -> None:
    """Keep the space of the last `run.json` write (the record so far and a margin), released just
    before it, so a run that fills the disk is still recorded (a run folder here, a trial folder in
    `tune/trial_run.py`).

    Zeros written, not `posix_fallocate`: a write takes the space from the file system as surely
    (a full disk refuses it), but blocks allocated by fallocate are freed in a journal transaction
    when the reserve is deleted at the run's end: 0.4-2 ms of the launcher blocked per run on ext4
    (0.01 ms for the written file, deleted before it reached the disk), which a sweep's launcher
    pays once per point between two points."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < size:
            written += os.write(fd, bytes(min(size - written, 1 << 16)))
    finally:
        os.close(fd)
