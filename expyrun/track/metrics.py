"""`metrics.jsonl`, `texts.jsonl` and `figures/`: the one owner of what a run logs (SPEC 11.1).

Writers (`Writer`, `LineSink`) and readers (`read_metrics`, `read_series`, `read_texts`,
`list_figures`, `summarize`) live together so the file format is decided in one place; every other
module (the logging API, the run's end, the reading API, the viewer) goes through them.

The format: one JSON object per line, `{"step": S, "time": T, NAME: VALUE, ...}`, step first and
time second, NaN and infinities written as the strings `"nan"`, `"inf"`, `"-inf"` (strict JSON
readers refuse the bare tokens). A line appended by another program (`$EXPYRUN_METRICS`) may lack
`step` (the previous line's plus one, 0 first); one without `time` gets the time the tee saw it
(`LineSink`, `add_times`). A line that is not a JSON mapping (a program that wrote half a line,
then died) is skipped by readers. When the run ends, `.metrics.columns` holds the same series as
binary arrays for readers of many runs (`write_columns`). The names are in `track/files.py`.

Cost: a write is one `os.write` on a descriptor opened once per run with `O_APPEND`, so the line is
in the operating system when the call returns (a SIGKILL of the run loses nothing) and lines from
several threads or processes never interleave.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, overload

from expyrun.track.files import COLUMNS_FILE, FIGURES_FOLDER, METRICS_FILE, SKIPPED_FILE, TEXTS_FILE
from expyrun.track.files import METRICS_ENV as METRICS_ENV  # where callers have imported it from

_COLUMNS_MAGIC = b"expyrun-metric-columns 1\n"
RESERVED_NAMES = ("step", "time", "index")  # written by expyrun or arguments: never metric names
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "NaN": math.nan, "Infinity": math.inf,
               "-Infinity": -math.inf}  # fmt: skip


def number(key: str, value: Any) -> int | float:
    """`value` as a JSON number, or a TypeError naming `key`: Python numbers (not `bool`), and
    anything whose `.item()` is one (NumPy scalars, 0-d arrays, tensors)."""
    kind = type(value)
    if kind is float or kind is int:
        return value
    if not isinstance(value, bool):
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        item = getattr(value, "item", None)
        if callable(item):
            try:
                converted = item()
            except Exception:  # an array of several values, a tensor on a device that refuses: not a number
                converted = None
            if type(converted) in (int, float):
                return converted
        import numbers

        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            return float(value)
        if isinstance(value, numbers.Integral) and not hasattr(value, "dtype"):
            return int(value)
    raise TypeError(f"expyrun.log: `{key}` is {_described(value)}, not a number")


def _described(value: Any) -> str:
    kind = type(value)
    shape = getattr(value, "shape", None)
    detail = f" of shape {tuple(shape)}" if shape is not None and not isinstance(shape, int) else ""
    return f"a {kind.__module__ + '.' if kind.__module__ not in ('builtins',) else ''}{kind.__name__}{detail}"


def encode_number(value: int | float) -> str:
    """A number as it is written: `repr`, with NaN and infinities as strings."""
    if value - value == 0:  # finite (NaN - NaN and inf - inf are NaN)
        return repr(value)
    return '"nan"' if value != value else ('"inf"' if value > 0 else '"-inf"')


def parse_number(value: Any) -> float | int | None:
    """A value read back from a line: a number, `"nan"`/`"inf"`/`"-inf"`, or None (not a number)."""
    if type(value) in (int, float):
        return value
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    return None


class Writer:
    """The files of one run folder, opened on first use: a step counter and `metrics.jsonl`.

    Safe across threads (one lock for the counter and the write, so steps in the file follow the
    order of calls) and across `fork` (a forked process gets a fresh lock and keeps the descriptor).
    """

    def __init__(self, run_dir: str, started: float | None) -> None:
        self.run_dir = run_dir
        self.started = started  # seconds since the epoch when the run started (`time` counts from it; None: no time)
        self.step: int | None = None  # the last step `log` used
        self.lock = threading.Lock()
        self._metrics: int | None = None
        self._texts: int | None = None
        self._keys: dict[str, str] = {}

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()

    def _open(self, name: str) -> int:
        return os.open(os.path.join(self.run_dir, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def log(self, step: int | None, values: dict[str, Any]) -> int:
        """Write one line of scalars; returns its step. (The hot path of `expyrun.log`: one pass over
        the values building the text, no list, one lock, one write.)"""
        text = ""
        keys = self._keys
        for key, value in values.items():
            encoded = keys.get(key)
            if encoded is None:
                encoded = keys[key] = _key(key)
            kind = type(value)
            if kind is not float and kind is not int:
                value = number(key, value)
            text += f", {encoded}{value!r}" if value - value == 0 else f", {encoded}{encode_number(value)}"
        if not text:
            raise TypeError("expyrun.log: no values to log (give them as keywords: expyrun.log(loss=0.3))")
        if step is not None and type(step) is not int:
            step = _step(step)
        started = self.started
        with self.lock:
            if step is None:
                step = 0 if self.step is None else self.step + 1
            self.step = step
            if started is not None:
                line = f'{{"step": {step}, "time": {round(time.time() - started, 4)!r}{text}}}\n'
            else:
                line = f'{{"step": {step}{text}}}\n'
            if self._metrics is None:
                self._metrics = self._open(METRICS_FILE)
            os.write(self._metrics, line.encode())
        return step

    def text_step(self, step: int | None) -> int:
        """The step of a text or figure: the one given, else the last step `log` used (0 before any)."""
        if step is not None:
            return _step(step)
        return 0 if self.step is None else self.step

    def log_text(self, tag: str, text: str, step: int | None) -> None:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"expyrun.log_text: the tag must be a non-empty string, not {tag!r}")
        if not isinstance(text, str):
            raise TypeError(f"expyrun.log_text: `{tag}`: the text is a {type(text).__name__}, not a string")
        at = None if self.started is None else round(time.time() - self.started, 4)
        line = json.dumps({"step": self.text_step(step), "time": at, "tag": tag, "text": text}, ensure_ascii=False)
        with self.lock:
            if self._texts is None:
                self._texts = self._open(TEXTS_FILE)
            os.write(self._texts, (line + "\n").encode())

    def log_figure(self, tag: str, figure: Any, step: int | None) -> Path:
        """`figures/{tag}/{step}.png` (matplotlib: `savefig`) or `.json` (plotly: `to_json`), written
        to a temporary name and renamed, so a reader never sees half a figure."""
        folder = Path(self.run_dir, FIGURES_FOLDER, *figure_tag_parts(tag))
        at = self.text_step(step)
        if callable(getattr(figure, "to_json", None)) and not callable(getattr(figure, "savefig", None)):
            path, data = folder / f"{at}.json", figure.to_json().encode()
        elif callable(getattr(figure, "savefig", None)):
            import io

            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            path, data = folder / f"{at}.png", buffer.getvalue()
        else:
            raise TypeError(
                f"expyrun.log_figure: `{tag}`: a {type(figure).__name__} is neither a matplotlib figure "
                "(savefig) nor a plotly figure (to_json)"
            )
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{at}.{os.getpid()}.{threading.get_ident()}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return path


def figure_tag_parts(tag: str) -> list[str]:
    """A figure tag as folder names (`val/curve` is two); a tag that would leave `figures/` is refused."""
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"expyrun.log_figure: the tag must be a non-empty string, not {tag!r}")
    parts = tag.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise ValueError(f"expyrun.log_figure: tag {tag!r} is not a relative folder name")
    return parts


def _key(name: str) -> str:
    if name in RESERVED_NAMES:
        raise TypeError(f"expyrun.log: `{name}` is not a metric name (step and index are arguments, time is expyrun's)")
    return json.dumps(name, ensure_ascii=False) + ": "


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        item = getattr(step, "item", None)
        converted = item() if callable(item) and not isinstance(step, bool) else None
        if type(converted) is not int:
            raise TypeError(f"expyrun.log: the step must be an integer, not {step!r}")
        step = converted
    return int(step)


# --- lines from other programs: `$EXPYRUN_METRICS` and `__metrics__` patterns --------------------------


class LineSink:
    """What the tee does for metrics: turns the run's output into metric lines with
    `__run__.__metrics__` patterns, and times the lines a program appends to `$EXPYRUN_METRICS`.

    Each pattern is searched in every complete line (either stream); a match is a metric line:
    the `step` group its step, the other named groups numbers. A match whose value is not a number
    is counted (`skipped`) and written nowhere. Appended lines: the tee notes when `metrics.jsonl`
    grew (`poll`, at most every 50 ms while it waits or copies); when the run's output ends, a line
    written without `time` gets the time its growth was first seen (`add_times`).
    """

    def __init__(self, run_dir: str, patterns: Iterable[str], started: float | None = None) -> None:
        self.patterns = [re.compile(pattern) for pattern in patterns]
        self.writer = Writer(run_dir, time.time() if started is None else started)
        self.pending = b""
        self.skipped = 0
        self.grown: list[tuple[int, float]] = []  # (size of metrics.jsonl, seconds since the start) as seen
        self._next_look = 0.0

    def poll(self, force: bool = False) -> None:
        now = time.monotonic()
        if now < self._next_look and not force:
            return
        self._next_look = now + 0.05
        try:
            size = os.stat(os.path.join(self.writer.run_dir, METRICS_FILE)).st_size
        except OSError:
            return
        if (not self.grown or size > self.grown[-1][0]) and self.writer.started is not None:
            self.grown.append((size, round(time.time() - self.writer.started, 4)))

    def feed(self, data: bytes) -> None:
        self.poll()
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > 1 << 16:  # a run that never ends its line: match what came so far
            lines.append(self.pending)
            self.pending = b""
        for line in lines:
            self.match(line.decode("utf-8", "replace"))

    def match(self, line: str) -> None:
        for pattern in self.patterns:
            found = pattern.search(line)
            if found is None:
                continue
            groups = found.groupdict()
            step_text = groups.pop("step", None)
            try:
                step = None if step_text is None else int(step_text)
                values = {name: _parsed(text) for name, text in groups.items() if text is not None}
            except ValueError:
                self.skipped += 1
                continue
            if values:
                try:
                    self.writer.log(step, values)
                except (TypeError, OSError):
                    self.skipped += 1

    def close(self, times: bool = True) -> None:
        """Match a last unterminated line; record how many matches were skipped; give appended lines
        their times (`times`)."""
        if self.pending:
            self.match(self.pending.decode("utf-8", "replace"))
            self.pending = b""
        if self.skipped:
            with contextlib.suppress(OSError):
                Path(self.writer.run_dir, SKIPPED_FILE).write_text(f"{self.skipped}\n")
        if not times:
            return
        self.poll(force=True)
        if self.grown:
            add_times(os.path.join(self.writer.run_dir, METRICS_FILE), self.grown)


def match_log(run_dir: str | Path, patterns: tuple[str, ...]) -> None:
    """`__metrics__` matched against a run's ended `outputs.log` (not a batch's shared log, a link):
    one metrics line per match, without `time` (when it was printed is not known)."""
    log = Path(run_dir, "outputs.log")
    if log.is_symlink() or not log.is_file():
        return
    sink = LineSink(str(run_dir), patterns)
    sink.writer.started = None  # lines without `time`
    sink.feed(log.read_bytes())
    sink.close(times=False)


def add_times(path: str, grown: list[tuple[int, float]]) -> None:
    """Give each line of `path` that has no `time` the time the file was first seen holding it
    (`grown`: sizes and times, in order), rewriting the file atomically; a file whose every line
    has a time (`expyrun.log`'s) is left as it is without parsing it."""
    with open(path, "rb") as file:
        data = file.read()
    lines = data.split(b"\n")
    if data.count(b'"time"') >= len(lines) - lines.count(b""):  # as many times as lines
        return
    out: list[bytes] = []
    end, at = 0, 0
    for line in lines:
        end += len(line) + 1
        while at < len(grown) - 1 and grown[at][0] < end - 1:
            at += 1
        try:
            item = json.loads(line) if line.strip() else None
        except ValueError:
            item = None
        if isinstance(item, dict) and "time" not in item:
            head = {"step": item.pop("step")} if "step" in item else {}
            line = json.dumps({**head, "time": grown[at][1], **item}, ensure_ascii=False).encode()
        out.append(line)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as file:
        file.write(b"\n".join(out))
    os.replace(temporary, path)


def _parsed(text: str) -> float:
    value = float(text.strip())  # ValueError: not a number
    return int(value) if value.is_integer() and text.strip().lstrip("+-").isdigit() else value


# --- reading ------------------------------------------------------------------------------------------


def iter_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """The JSON mappings of a JSON-lines file, in order; a missing file is empty, a bad line skipped."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return
    loads = json.loads
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            item = loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            yield item


def _steps(lines: Iterable[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each metrics line with its step: its own, else the previous line's plus one (0 first)."""
    previous: int | None = None
    for line in lines:
        step = line.get("step")
        if type(step) is not int:
            step = 0 if previous is None else previous + 1
        previous = step
        yield step, line


def read_metrics(run_dir: str | Path, name: str | None = None) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run (or only `name`) as `{name: [(step, value), ...]}`, in the order logged."""
    series: dict[str, list[tuple[int, float]]] = {}
    for step, line in _steps(iter_lines(os.path.join(run_dir, METRICS_FILE))):
        for key, raw in line.items():
            if key in ("step", "time") or (name is not None and key != name):
                continue
            value = parse_number(raw)
            if value is not None:
                series.setdefault(key, []).append((step, value))
    return series


class Steps(Sequence[int]):
    """The steps of a series as read (the digits of each line), made numbers when asked: a reader that
    keeps 2,000 of 100,000 points (the runs viewer's buckets) converts 2,000. Compares equal to a list
    holding the same numbers."""

    __slots__ = ("_texts",)

    def __init__(self, texts: list[bytes]) -> None:
        self._texts = texts

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> list[int]: ...
    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return list(map(int, self._texts[index]))
        return int(self._texts[index])

    def __iter__(self) -> Iterator[int]:
        return map(int, self._texts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which have none


class SeriesChunk(NamedTuple):
    """One metric's points in the complete lines of a part of `metrics.jsonl` (`follow_series`)."""

    steps: Sequence[int]
    values: list[float]  # NaN and infinities as floats
    end: int  # the offset after the part's last complete line: where the next part starts
    last_step: int | None  # the step of the part's last line (a line without one counts on from it)
    left: int  # bytes of the file after `end` when this part was read (0: it was the end)


FOLLOW_CHUNK_BYTES = 1 << 20  # what `follow_series` parses at once: its memory, whatever the file's size
_STEP_TEXT = re.compile(rb'\{"step": (-?[0-9]+)[,}]')
_VALUE_PATTERNS: dict[str, re.Pattern[bytes]] = {}
_QUOTED = {f'"{text}"'.encode(): value for text, value in _NON_FINITE.items()}


def _value_pattern(name: str) -> re.Pattern[bytes]:
    """`, "NAME": VALUE` with VALUE a JSON number, a quoted string (`"nan"`) or Python's bare NaN and
    infinities; starting with a literal, so it is found at C speed (no scan from each line's start)."""
    pattern = _VALUE_PATTERNS.get(name)
    if pattern is None:
        key = re.escape(b", " + json.dumps(name, ensure_ascii=False).encode() + b": ")
        pattern = re.compile(key + rb'(-?[0-9][0-9.eE+-]*|"[^"\n]*"|NaN|-?Infinity)')
        _VALUE_PATTERNS[name] = pattern
    return pattern


def _numbers(texts: list[bytes]) -> list[float] | None:
    """The numbers of value texts in one call (`float` at C speed); None when one is not a number
    (a quoted string other than NaN's and the infinities': the caller reads its lines with json)."""
    try:
        return list(map(float, texts))
    except ValueError:
        pass
    out = []
    for text in texts:
        value = _QUOTED.get(text) if text[:1] == b'"' else None
        if value is None:
            try:
                value = float(text) if text[:1] != b'"' else None
            except ValueError:
                value = None
        if value is None:
            return None
        out.append(value)
    return out


def _shaped_lines(data: bytes) -> int | None:
    """How many lines `data` holds when each is shaped as `Writer` writes them (see `_parse_ours`),
    else None. Counts of single bytes and of one separator: about 1.5 ms a megabyte."""
    lines = data.count(b"\n")
    if (
        not data.startswith(b'{"step": ')
        or not data.endswith(b"}\n")
        or data.count(b'}\n{"step": ') != lines - 1
        or data.count(b"{") != lines
        or (b"\\" in data and (b"\\u" in data or b"\\/" in data))  # (one byte is found at memchr speed)
    ):
        return None
    return lines


def _parse_ours(data: bytes, name: str) -> tuple[Sequence[int], list[float]] | None:
    """The points of `name` in complete lines all written as `Writer` writes them (`json.dumps` of a
    flat mapping, step first, writes them so too), without one `json.loads` per line; None when some
    line is otherwise (the caller then reads them line by line).

    Why it may trust the text: every line starts `{"step": INT` and ends `}` (each newline but the
    last sits between `}` and `{"step": `), and holds no other `{` (no nested mapping), so
    `, "NAME": ` can only be a key of the line's own mapping (a quote inside a JSON string is `\\"`);
    and no `\\u` or `\\/`, so a name is written as `json.dumps(NAME, ensure_ascii=False)` writes it
    (`json.dumps`'s default writes `"\\u00e9"` for `"é"`). A line that repeats a key (not JSON that
    `json.dumps` writes) may shift the points' steps.
    Cost for 100,000 lines (6.3 MB): a few counts, two `findall`, one `map(float)`: about 55 ms on 2
    busy cores (8-9 ms a megabyte), against 105 ms for one expression tried from each line's start
    with its conversions (what it replaces), and 300 ms for `json.loads` per line."""
    lines = _shaped_lines(data)
    if lines is None:
        return None
    steps = _STEP_TEXT.findall(data)
    if len(steps) != lines:  # a step that is not an integer
        return None
    pattern = _value_pattern(name)
    texts = pattern.findall(data)
    if len(texts) == lines:  # the metric on every line (the common case): the i-th value is the i-th line's
        values = _numbers(texts)
        return None if values is None else (Steps(steps), values)
    # on some lines only: each match's step is that of the line it is in
    found_steps: list[int] = []
    found: list[bytes] = []
    line_start = -1
    for match in pattern.finditer(data):
        start = data.rfind(b"\n", 0, match.start()) + 1
        if start == line_start:  # the key twice on one line
            return None
        line_start = start
        step = _STEP_TEXT.match(data, start)
        if step is None:
            return None
        found_steps.append(int(step.group(1)))
        found.append(match.group(1))
    values = _numbers(found)
    return None if values is None else (found_steps, values)


_NAMED_VALUE = re.compile(rb', ("(?:[^"\\\n]|\\.)*"): (-?[0-9][0-9.eE+-]*|"[^"\n]*"|NaN|-?Infinity)')


def names_in(data: bytes) -> list[str]:
    """The metric names in the complete lines of `data` (a part of `metrics.jsonl`): the keys but
    `step` and `time` that hold a number (or NaN's or an infinity's string), as `read_metrics` reads
    them, in the order they first appear. Lines shaped as `Writer` writes them are read with one
    `findall` (the runs viewer asks a running run's names at every poll: its first and last 64 KB,
    1,100 lines each of `bench_ui.py`'s, cost 1 ms each instead of 3.3 ms); any other line with `json`."""
    data = data[: data.rfind(b"\n") + 1]
    names: dict[str, None] = {}
    if _shaped_lines(data) is not None:
        found = dict.fromkeys(key for key, value in _NAMED_VALUE.findall(data) if value[:1] != b'"' or value in _QUOTED)
        for key in found:
            with contextlib.suppress(ValueError):
                names[json.loads(key)] = None
    else:
        for line in data.splitlines():
            try:
                item = json.loads(line) if line.strip() else None
            except ValueError:
                continue
            if isinstance(item, dict):
                names.update(dict.fromkeys(key for key, value in item.items() if parse_number(value) is not None))
    names.pop("step", None)
    names.pop("time", None)
    return list(names)


def _parse_lines(data: bytes, name: str, previous_step: int | None) -> tuple[list[int], list[float], int | None]:
    """The points of `name` in any complete lines, one `json.loads` each: lines from other programs
    (maybe without a step: the previous line's plus one), or that `_parse_ours` cannot trust."""
    steps: list[int] = []
    values: list[float] = []
    step = previous_step
    for line in data.splitlines():
        try:
            item = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        given = item.get("step")
        step = given if type(given) is int else (0 if step is None else step + 1)
        value = parse_number(item.get(name))
        if value is not None:
            steps.append(step)
            values.append(float(value))
    return steps, values, step


def _parse(data: bytes, name: str, previous_step: int | None) -> tuple[Sequence[int], list[float], int | None]:
    """(steps, values, the last line's step) of `name` in `data`, complete lines."""
    ours = _parse_ours(data, name)
    if ours is None:
        return _parse_lines(data, name, previous_step)
    last = _STEP_TEXT.match(data, data.rfind(b"\n", 0, len(data) - 1) + 1)
    return ours[0], ours[1], int(last.group(1)) if last else previous_step


def read_series(run_dir: str | Path, name: str) -> tuple[Sequence[float], Sequence[float]]:
    """One metric of a run as (steps, values): the fast path of `metrics_frame` over many runs.

    An ended run's `.metrics.columns` is read when it is current (two float64 arrays). Otherwise
    the whole file is parsed as `follow_series` parses a part (lines as `Writer` writes them without
    one `json.loads` each); a last line without its newline counts here, as in `read_metrics`.
    """
    columns = _read_columns(run_dir, name)
    if columns is not None:
        return columns
    try:
        with open(os.path.join(run_dir, METRICS_FILE), "rb") as file:
            data = file.read()
    except OSError:
        return [], []
    if not data.strip():
        return [], []
    if not data.endswith(b"\n"):
        data += b"\n"
    steps, values, _ = _parse(data, name, None)
    return list(map(float, steps)), values


def follow_series(
    run_dir: str | Path, name: str, offset: int = 0, previous_step: int | None = None,
    chunk_bytes: int = FOLLOW_CHUNK_BYTES,
) -> Iterator[SeriesChunk]:  # fmt: skip
    """The points of metric `name` in the complete lines written since byte `offset` of a growing
    `metrics.jsonl`, part by part (about `chunk_bytes` each), for a reader that follows a running run
    (the runs viewer) and reduces each part before the next is read: its memory stays that of one
    part. A line still being written is left for the next call (it starts at the last part's `end`;
    give `last_step` as `previous_step`). A missing file has no parts."""
    try:
        file = open(os.path.join(run_dir, METRICS_FILE), "rb")  # noqa: SIM115 (closed below; a generator)
    except OSError:
        return
    with file:
        size = os.fstat(file.fileno()).st_size
        file.seek(offset)
        pending = b""
        while True:
            data = pending + file.read(chunk_bytes)
            read_to = file.tell()
            cut = data.rfind(b"\n") + 1
            if not cut:
                if read_to >= size or len(data) == len(pending):  # a torn last line, or the end
                    return
                pending = data  # one line longer than a part: read on until it ends
                continue
            pending = data[cut:]
            steps, values, previous_step = _parse(data[:cut], name, previous_step)
            offset += cut
            yield SeriesChunk(steps, values, offset, previous_step, max(0, size - offset))
            if read_to >= size:
                return


def read_series_from(
    run_dir: str | Path, name: str, offset: int = 0, previous_step: int | None = None
) -> tuple[list[int], list[float], int, int | None]:
    """`follow_series` in one answer: (steps, values, the offset to give next time, the last line's
    step, to give as `previous_step`)."""
    steps: list[int] = []
    values: list[float] = []
    for chunk in follow_series(run_dir, name, offset, previous_step):
        steps += chunk.steps
        values += chunk.values
        offset, previous_step = chunk.end, chunk.last_step
    return steps, values, offset, previous_step


def read_texts(run_dir: str | Path, tag: str | None = None) -> dict[str, list[tuple[int, str]]]:
    """`{tag: [(step, text), ...]}` of `texts.jsonl` (only `tag` when given)."""
    texts: dict[str, list[tuple[int, str]]] = {}
    for line in iter_lines(os.path.join(run_dir, TEXTS_FILE)):
        line_tag, text, step = line.get("tag"), line.get("text"), line.get("step")
        if not isinstance(line_tag, str) or not isinstance(text, str) or type(step) is not int:
            continue
        if tag is None or line_tag == tag:
            texts.setdefault(line_tag, []).append((step, text))
    return texts


def list_figures(run_dir: str | Path, tag: str | None = None) -> dict[str, list[tuple[int, Path]]]:
    """`{tag: [(step, path), ...]}` of `figures/`, by step (only `tag` when given)."""
    root = Path(run_dir, FIGURES_FOLDER)
    figures: dict[str, list[tuple[int, Path]]] = {}
    folders = [root.joinpath(*figure_tag_parts(tag))] if tag is not None else [p for p in root.rglob("*") if p.is_dir()]
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        found = [(int(p.stem), p) for p in entries if p.suffix in (".png", ".json") and p.stem.isdigit()]
        if found:
            figures[folder.relative_to(root).as_posix()] = sorted(found)
    return figures


def summarize(
    run_dir: str | Path, series: dict[str, list[tuple[int, float]]] | None = None
) -> dict[str, dict[str, Any]]:
    """`run.json`'s `metrics`: per name `last`, `min`, `max` (NaN ignored; None when every value is
    NaN), `step` (of the last value) and `count` (`series`: the run's metrics, already read)."""
    if series is None:
        series = read_metrics(run_dir)
    summary: dict[str, dict[str, Any]] = {}
    for name, points in series.items():
        numbers = [value for _, value in points if value == value]
        summary[name] = {
            "last": points[-1][1], "min": min(numbers) if numbers else None, "max": max(numbers) if numbers else None,
            "step": points[-1][0], "count": len(points),
        }  # fmt: skip
    return summary


def write_columns(run_dir: str | Path, series: dict[str, list[tuple[int, float]]]) -> None:
    """`.metrics.columns`: every metric's steps and values as float64 arrays, with the size of the
    `metrics.jsonl` they were read from. Written once, when the run ends: reading one metric of
    1,000 runs of 10,000 steps then costs a read of each array instead of parsing 10 million lines
    (`read_series` uses it only while `metrics.jsonl` still has that size)."""
    from array import array

    source = os.path.join(run_dir, METRICS_FILE)
    size = os.stat(source).st_size
    header: dict[str, Any] = {"source_bytes": size, "byteorder": sys.byteorder, "series": {}}
    chunks: list[bytes] = []
    offset = 0
    for name, points in series.items():
        steps = array("d", (float(step) for step, _ in points)).tobytes()
        values = array("d", (float(value) for _, value in points)).tobytes()
        header["series"][name] = [offset, len(points)]
        chunks += (steps, values)
        offset += len(steps) + len(values)
    path = os.path.join(run_dir, COLUMNS_FILE)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as file:
        file.write(_COLUMNS_MAGIC + json.dumps(header).encode() + b"\n")
        for chunk in chunks:
            file.write(chunk)
    os.replace(temporary, path)


def _read_columns(run_dir: str | Path, name: str) -> tuple[Any, Any] | None:
    """(steps, values) of `name` from `.metrics.columns` as float64 arrays, or None when there is no
    such file, it is not current (`metrics.jsonl` changed since), or it lacks `name`... then `()`."""
    from array import array

    try:
        fd = os.open(os.path.join(run_dir, COLUMNS_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        head = os.pread(fd, 1 << 16, 0)
        if not head.startswith(_COLUMNS_MAGIC) or b"\n" not in head[len(_COLUMNS_MAGIC) :]:
            return None
        end = head.index(b"\n", len(_COLUMNS_MAGIC))
        header = json.loads(head[len(_COLUMNS_MAGIC) : end])
        if header.get("byteorder") != sys.byteorder:
            return None
        if os.stat(os.path.join(run_dir, METRICS_FILE)).st_size != header.get("source_bytes"):
            return None
        found = header.get("series", {}).get(name)
        if found is None:
            return array("d"), array("d")
        offset, count = found
        data = os.pread(fd, 16 * count, end + 1 + offset)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    finally:
        os.close(fd)
    if len(data) != 16 * count:
        return None
    steps, values = array("d"), array("d")
    steps.frombytes(data[: 8 * count])
    values.frombytes(data[8 * count :])
    return steps, values


def skipped_matches(run_dir: str | Path) -> int:
    """How many `__metrics__` matches the tee could not read as numbers (0 when none)."""
    try:
        return int(Path(run_dir, SKIPPED_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def finish_fields(run_dir: str | Path, patterns: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the end of a run adds to its record: `metrics` when it logged any, `metrics_skipped`
    when patterns matched values that were not numbers. Never raises: a run's end is recorded anyway.

    `patterns`: `__metrics__` of a run whose output no tee read (a study trial, written to its log
    by its worker): they are matched against its `outputs.log` now, the lines written without a time.
    """
    fields: dict[str, Any] = {}
    if patterns:
        with contextlib.suppress(Exception):
            match_log(run_dir, patterns)
    try:
        series = read_metrics(run_dir)
        summary = summarize(run_dir, series)
        if series:
            write_columns(run_dir, series)
    except Exception:  # a metrics file that cannot be read (or a full disk) never stops the record
        summary = {}
    if summary:
        fields["metrics"] = summary
    skipped = skipped_matches(run_dir)
    if skipped:
        fields["metrics_skipped"] = skipped
    return fields
