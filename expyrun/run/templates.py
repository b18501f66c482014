"""`__templates__` (SPEC 10): Jinja2 files rendered from the run's config into its folder.

A template is text from the user's project (or from a config someone sent), and it is rendered by
`--dry-run` too, so rendering it must not be able to do more than produce text:
- it is rendered in Jinja2's sandbox (no attributes starting with `_`, so no way to `os` or to
  `os.environ`; `range` bounded), with nothing but the config and `name` in its context;
- a secret (SPEC 2.2: never on disk) reaches it as the reference `config.yml` holds (`$API_TOKEN`):
  the rendered file holds the reference, which the tool expands from its environment, and the
  launch warns naming the template;
- its output and every file it reads are bounded in size (`__max_file_mb__`) and, in the main thread,
  its rendering in time; a template that includes itself, nests too deep, is not UTF-8 or asks for
  too much is a one-line error naming file and line;
- it may not render to a name expyrun writes in the run folder (`config.yml`, `run.json`, ...), and
  a command run's template must be part of the snapshot, as the run folder renders it from there.

Jinja2 is imported only here, and this module only for configs with templates: it costs about
30 ms that a launch without templates does not pay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.config import RESERVED_SECTIONS, ResolvedConfig, dotted
from expyrun.config.tree import copy_tree, get, set_at
from expyrun.errors import ConfigError

if TYPE_CHECKING:
    import jinja2

TEMPLATE_SUFFIX = ".j2"
RENDER_SECONDS = 10.0  # one template; a real one renders in milliseconds
# What expyrun itself writes at the top of a run, sweep or study folder: a template rendering to one
# of these names would replace the run's own record or config (and a rerun of it would then fail).
WRITTEN_BY_EXPYRUN = frozenset(
    {
        "config.yml", "raw_config.yml", "run.json", "outputs.log", "frozen_requirements.txt", "git.diff",
        ".expyrun-reserve", "slurm.sh", "sweep.json", "study.json", "study.journal", "metrics.jsonl",
        "texts.jsonl", "annotations.json", "figures", "plots", "trials", "batches",
    }
)  # fmt: skip


class _SecretText(str):
    """A secret's reference text (`$API_TOKEN`) in a template's context: noticed when rendered."""

    __slots__ = ("key",)
    key: str


class _OutOfTime(Exception):
    """Raised in the template's code by the alarm: it ran longer than `RENDER_SECONDS`."""


def render_templates(
    resolved: ResolvedConfig, code: Path, into: Path | None = None, warn: bool = False, snapshotted: bool = False
) -> list[Path]:
    """Render every `__templates__` file (folders: every file in them) in Jinja2's sandbox, undefined
    names being errors; write them under `into` (without `.j2`) when given. Returns the files written.

    `warn`: say which templates render a secret (once per launch, when the config is checked).
    `snapshotted`: check each template will be in a command run's snapshot, which the run's folder
    is rendered from.
    """
    run = resolved.run
    environment = _environment(int(run.max_file_mb * 1024 * 1024))
    context, secret_keys = _context(resolved)
    files = _template_files(run.templates, code)
    if snapshotted:
        _check_snapshotted(code, files, run.max_file_mb)
    in_snapshot = set(files) if snapshotted else None  # what an include may load is checked the same way
    written = []
    for relative in files:
        target = _target(relative)
        used: list[str] = []
        text = _render(environment, code, relative, context, used, in_snapshot)
        if warn and used:
            keys = ", ".join(f"`{key}`" for key in dict.fromkeys(used))
            references = ", ".join(sorted({secret_keys[key] for key in used}))
            console.warning(
                f"{code / relative}: renders {keys}, which holds a secret: the file holds its reference "
                f"({references}), for the tool to read from its environment"
            )
        if into is not None:
            path = into / target
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():  # the snapshot's read-only copy of the template's output
                path.unlink()
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def _environment(limit: int) -> jinja2.Environment:
    """A sandboxed environment whose `*` and `**` cannot build huge values, and which notes the
    secrets a `{{ ... }}` outputs."""
    import jinja2
    from jinja2.exceptions import SecurityError  # its owner: jinja2.sandbox only imports it
    from jinja2.sandbox import SandboxedEnvironment

    class Sandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "*" and _repeated_size(left, right) > limit:
                raise SecurityError(f"`*` would build a value larger than {_mb(limit)}")
            if operator == "**" and _power_bits(left, right) > 8 * limit:
                raise SecurityError("`**` would build a number larger than the template may write")
            return super().call_binop(context, operator, left, right)

    environment = Sandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, finalize=_noting_secrets)
    environment.output_limit = limit  # type: ignore[attr-defined]
    return environment


def _power_bits(left: Any, right: Any) -> int:
    """About how many bits `left ** right` would take for integers (0 when it stays small)."""
    if not isinstance(left, int) or not isinstance(right, int) or right <= 0 or abs(left) <= 1:
        return 0
    return abs(left).bit_length() * right


def _mb(limit: int) -> str:
    return f"{limit / (1024 * 1024):.3g} MB"


def _repeated_size(left: Any, right: Any) -> int:
    """The length `left * right` would have when it repeats a string or a list (0 otherwise)."""
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and not isinstance(count, bool):
            return len(sequence) * max(count, 0)
    return 0


_rendering = threading.local()  # the list the current render notes the secret keys it output in


def _noting_secrets(value: Any) -> Any:
    """Jinja's `finalize`: called on every `{{ ... }}` value before it becomes text."""
    used = getattr(_rendering, "used", None)
    if used is not None:
        used.extend(_secret_keys_in(value))
    return value


def _secret_keys_in(value: Any) -> Iterator[str]:
    if isinstance(value, _SecretText):
        yield value.key
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_keys_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secret_keys_in(item)


def _context(resolved: ResolvedConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """The user config as `config.yml` holds it (a secret as its reference, marked), plus `name`;
    and, for each secret key, its reference text."""
    context = copy_tree(resolved.user_config())
    references: dict[str, str] = {}
    for path in resolved.secret_paths:
        if not path or path[0] in RESERVED_SECTIONS:
            continue
        key = dotted(path)
        reference = get(resolved.raw, path)
        set_at(context, path, _marked(reference, key))
        references[key] = reference if isinstance(reference, str) else f"`{key}`"
    return {**context, "name": resolved.run.name}, references


def _marked(value: Any, key: str) -> Any:
    if isinstance(value, str):
        text = _SecretText(value)
        text.key = key
        return text
    if isinstance(value, dict):
        return {name: _marked(item, key) for name, item in value.items()}
    if isinstance(value, list):
        return [_marked(item, key) for item in value]
    return value


def _render(
    environment: jinja2.Environment,
    code: Path,
    relative: str,
    context: dict[str, Any],
    used: list[str],
    in_snapshot: set[str] | None = None,
) -> str:
    """One template's text, or a ConfigError naming its file and line."""
    import jinja2

    limit: int = environment.output_limit  # type: ignore[attr-defined]
    environment.loader = _bounded_loader(code, limit, in_snapshot)
    where = code / relative
    _rendering.used = used
    try:
        template = environment.get_template(relative)
        with _deadline(RENDER_SECONDS):
            return _bounded_text(template, context, limit)
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(f"{where}:{error.lineno}: template error: {error.message}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}:{_byte_line(error)}: template error: not UTF-8 text", "save it as UTF-8") from None
    except (jinja2.TemplateError, _OutOfTime, _TooLarge, RecursionError, MemoryError, OverflowError) as error:
        raise ConfigError(f"{where}:{_template_line(error, relative)}: template error: {_describe(error)}") from None
    finally:
        _rendering.used = None


def _bounded_loader(code: Path, limit: int, in_snapshot: set[str] | None) -> jinja2.BaseLoader:
    """Templates from `code`, none larger than `limit` bytes (Jinja2 reads a whole file to compile it).
    `in_snapshot`: the files known to be in the snapshot; any other a template includes must be too."""
    import jinja2
    from jinja2.exceptions import SecurityError
    from jinja2.loaders import split_template_path

    class BoundedLoader(jinja2.FileSystemLoader):
        def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
            path = os.path.join(str(code), *split_template_path(template))
            with contextlib.suppress(OSError):
                if os.path.getsize(path) > limit:
                    raise SecurityError(f"{template} is larger than {_mb(limit)} (`__run__.__max_file_mb__`)")
            if in_snapshot is not None and template not in in_snapshot:
                if _cache(Path(template)) or _git_ignored(code, [template]):
                    raise SecurityError(
                        f"{template} is left out of the snapshot the run is rendered from (git ignores it)"
                    )
                in_snapshot.add(template)
            return super().get_source(environment, template)

    return BoundedLoader(str(code))


class _TooLarge(Exception):
    """A template's output passed `__max_file_mb__`; `line`: where the template was then."""

    def __init__(self, limit: int, line: int | str) -> None:
        super().__init__(f"renders more than {_mb(limit)} (`__run__.__max_file_mb__`)")
        self.line = line


def _bounded_text(template: jinja2.Template, context: dict[str, Any], limit: int) -> str:
    """The template's output, stopped as soon as it passes `limit` characters."""
    parts, size = [], 0
    chunks: Any = template.generate(context)  # a generator: closed when stopped
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            line = _suspended_line(chunks, template)
            chunks.close()
            raise _TooLarge(limit, line)
        parts.append(chunk)
    return "".join(parts)


def _suspended_line(chunks: Any, template: jinja2.Template) -> int | str:
    """The template line a suspended `generate()` stands on (its innermost frame of that template)."""
    line: int | str = "?"
    while chunks is not None:
        frame = getattr(chunks, "gi_frame", None)
        if frame is not None and frame.f_code.co_filename == template.filename:
            line = template.get_corresponding_lineno(frame.f_lineno)
        chunks = getattr(chunks, "gi_yieldfrom", None)
    return line


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the template's code after `seconds` (an alarm: only the main thread can take it;
    elsewhere only the size bound holds)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _OutOfTime(f"still rendering after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "too deep: it includes itself (or a template that includes it), or nests deeper than Python follows"
    if isinstance(error, MemoryError):
        return "it builds a value larger than memory allows"
    return str(error) or type(error).__name__


def _byte_line(error: UnicodeDecodeError) -> int:
    """The line of the first byte that is not UTF-8."""
    data = error.object if isinstance(error.object, bytes) else bytes(error.object)
    return data[: error.start].count(b"\n") + 1


def _template_line(error: BaseException, relative: str) -> int | str:
    """The template line the error was met on (from the traceback Jinja2 rewrites)."""
    import traceback

    if isinstance(error, _TooLarge):
        return error.line
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if frame.filename.endswith(relative) and frame.lineno:
            return frame.lineno
    return "?"


def _template_files(templates: tuple[str, ...], code: Path) -> list[str]:
    """Every template file, relative to `code`: those listed, and every file of a listed folder."""
    files = []
    for template in templates:
        path = code / template
        if Path(template).is_absolute() or ".." in Path(template).parts:
            raise ConfigError(f"`__run__.__templates__`: {template} is not inside {code}", "name it relative to it")
        if path.is_dir():  # what a snapshot never holds (caches) is not a template either
            found = (p.relative_to(code) for p in path.rglob("*") if p.is_file() and not _cache(p.relative_to(code)))
            files += sorted(str(relative) for relative in found)
        elif path.is_file():
            files.append(template)
        else:
            raise ConfigError(f"`__run__.__templates__`: {template} not found in {code}")
    return files


def _target(relative: str) -> str:
    """Where a template is written in the run folder: its path without `.j2`; never a name expyrun writes."""
    target = relative[: -len(TEMPLATE_SUFFIX)] if relative.endswith(TEMPLATE_SUFFIX) else relative
    first = Path(target).parts[0]
    if first.lower() in WRITTEN_BY_EXPYRUN:  # (lower case: a case-insensitive file system has one name)
        raise ConfigError(
            f"`__run__.__templates__`: {relative} would be written as {target}, "
            "a name expyrun writes in the run folder",
            "rename it",
        )
    return target


def _cache(relative: Path) -> bool:
    """A file the snapshot leaves out whatever git says: `__pycache__/`, `.git/`, `*.pyc`."""
    from expyrun.run.snapshot import SKIPPED_DIRS

    return relative.suffix == ".pyc" or any(part in SKIPPED_DIRS for part in relative.parts)


def _check_snapshotted(code: Path, files: list[str], max_file_mb: float) -> None:
    """A command run's folder is rendered from its snapshot: a template left out of it (too large,
    git-ignored, in a cache folder) would pass `--dry-run`, then fail the launch."""
    for relative in files:
        if (code / relative).stat().st_size > max_file_mb * 1024 * 1024:
            raise ConfigError(
                f"`__run__.__templates__`: {relative} is larger than `__run__.__max_file_mb__` ({max_file_mb:g} MB): "
                "it would not be in the snapshot the run is rendered from",
                "raise `__max_file_mb__`",
            )
    ignored = _git_ignored(code, files)
    for relative in files:
        if _cache(Path(relative)) or relative in ignored:
            raise ConfigError(
                f"`__run__.__templates__`: {relative} is left out of the snapshot of {code} "
                "(git ignores it, or a cache): the run is rendered from the snapshot",
                "keep templates in files git does not ignore",
            )


def _git_ignored(code: Path, files: list[str]) -> set[str]:
    """Which of `files` (relative to `code`) git ignores, as the snapshot's listing of ignored files
    does (tracked files are never ignored): one `git check-ignore` for all of them."""
    import shutil
    import subprocess

    from expyrun.run.git_state import in_work_tree

    if not files or not in_work_tree(code) or shutil.which("git") is None:
        return set()
    try:
        answer = subprocess.run(
            ["git", "-C", str(code), "check-ignore", "-z", "--stdin"], input="\0".join(files).encode(),
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {entry for entry in answer.stdout.decode(errors="surrogateescape").split("\0") if entry}
