"""`expyrun.runs(DIR)` and `expyrun.sweep(SWEEP)`: runs read back from Python (SPEC 11.2).

Runs are found as `expyrun list` finds them (`reading.runs.iter_runs`: any depth, trials of studies
included; a folder whose `run.json` is not a run record is skipped with a warning naming it). Each
file is read through its owner: `run.json` (`run.record`), `metrics.jsonl`/`texts.jsonl`/`figures/`
(`track.metrics`), `annotations.json` (`track.annotations`), `sweep.json` (`sweep.record`).
Queries (`Runs.where`) are the query language of `expyrun list` (`reading.query`): one parser, one
evaluator. pandas is needed by `to_pandas` and `metrics_frame` only (the `analysis` extra).

A `Runs` is an immutable sequence: filtering returns a new one. Records are read once, when
`runs()` is called; metrics, texts and figures are read when asked for, so a `Runs` of 10,000
runs costs their `run.json` files only.
"""

from __future__ import annotations

import fnmatch
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from expyrun.track import metrics as metric_files

__all__ = ["Run", "Runs", "Sweep", "runs", "sweep"]


class Run:
    """One run folder: its record (`run.json`) and, read when asked, what it logged."""

    __slots__ = ("_annotations", "dir", "record")

    def __init__(self, run_dir: str | Path, record: dict[str, Any]) -> None:
        self.dir = Path(run_dir)
        self.record = record
        self._annotations: Any = None

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, status={self.status!r}, result={self.result!r})"

    @property
    def name(self) -> str | None:
        return self.record.get("name")

    @property
    def status(self) -> str | None:
        """The record's status, `died` for a run still marked running whose process is gone."""
        return self.record.get("status")

    @property
    def config(self) -> dict[str, Any]:
        config = self.record.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def result(self) -> Any:
        return self.record.get("result")

    @property
    def started(self) -> Any:
        """When the run started (a timezone-aware `datetime`), or None."""
        text = self.record.get("started_at")
        if not isinstance(text, str):
            return None
        from datetime import datetime

        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None

    @property
    def duration(self) -> float | None:
        """Seconds the run took (None while it runs)."""
        value = self.record.get("duration_s")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def tags(self) -> list[str]:
        return list(self._read_annotations()[0])

    @property
    def note(self) -> str:
        return self._read_annotations()[1]

    def _read_annotations(self) -> tuple[tuple[str, ...], str]:
        if self._annotations is None:
            self._annotations = _annotations(self.dir)
        return self._annotations

    def summary(self, name: str) -> dict[str, Any] | None:
        """`run.json`'s summary of metric `name` (last, min, max, step, count), NaN and infinities as floats."""
        metrics = self.record.get("metrics")
        found = metrics.get(name) if isinstance(metrics, dict) else None
        if not isinstance(found, dict):
            return None
        return {
            key: metric_files.parse_number(value) if isinstance(value, str) else value for key, value in found.items()
        }

    @overload
    def metrics(self, name: str) -> list[tuple[int, float]]: ...
    @overload
    def metrics(self, name: None = None) -> dict[str, list[tuple[int, float]]]: ...

    def metrics(self, name: str | None = None) -> Any:
        """`[(step, value), ...]` of metric `name`; without a name, `{name: [(step, value), ...]}`."""
        series = metric_files.read_metrics(self.dir, name)
        return series.get(name, []) if name is not None else series

    def texts(self, tag: str | None = None) -> Any:
        """`[(step, text), ...]` of `tag`; without a tag, `{tag: [(step, text), ...]}`."""
        texts = metric_files.read_texts(self.dir, tag)
        return texts.get(tag, []) if tag is not None else texts

    def figures(self, tag: str | None = None) -> Any:
        """`[(step, path), ...]` of `tag` (paths of `.png` or plotly `.json` files); without a tag, by tag."""
        figures = metric_files.list_figures(self.dir, tag)
        return figures.get(tag, []) if tag is not None else figures

    def row(self) -> dict[str, Any]:
        """The record as queries read it: `run.json` plus `tags`."""
        return {**self.record, "tags": self.tags}


def _annotations(run_dir: Path) -> tuple[tuple[str, ...], str]:
    """Tags and note, through `annotations.json`'s owner (launch tags are in that file too)."""
    from expyrun.track import annotations

    found = annotations.read(run_dir)
    return tuple(found.tags), found.note


class Runs(Sequence[Run]):
    """Runs in a fixed order (as found below the folder, or as filtered, sorted or shaped)."""

    def __init__(self, items: Sequence[Run]) -> None:
        self._runs = list(items)

    def __repr__(self) -> str:
        shown = ", ".join(str(run.dir) for run in self._runs[:5])
        return f"Runs({len(self._runs)} runs: {shown}{', ...' if len(self._runs) > 5 else ''})"

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self._runs)

    @overload
    def __getitem__(self, key: int) -> Run: ...
    @overload
    def __getitem__(self, key: slice | str | dict[str, Any]) -> Runs: ...

    def __getitem__(self, key: Any) -> Any:
        """`runs[0]` a run; `runs[1:3]` runs; `runs[{"model.name": "cnn"}]` runs whose config has those
        values (dotted keys; `name` and `status` too); `runs["sweep/lr0.1-*"]` runs whose name matches."""
        if isinstance(key, int) and not isinstance(key, bool):
            return self._runs[key]
        if isinstance(key, slice):
            return Runs(self._runs[key])
        if isinstance(key, str):
            return Runs([run for run in self._runs if fnmatch.fnmatchcase(run.name or "", key)])
        if isinstance(key, dict):
            return Runs([run for run in self._runs if all(_equal(_lookup(run, k), v) for k, v in key.items())])
        raise TypeError(f"runs[...] takes a position, a slice, a name pattern or a mapping of keys, not {key!r}")

    @property
    def dirs(self) -> list[Path]:
        return [run.dir for run in self._runs]

    def where(self, *conditions: str, status: str | None = None, tag: str | None = None) -> Runs:
        """The runs satisfying every condition (`"optim.lr < 0.1"`, `"tags ~ best"`): the query
        language of `expyrun list --where` (SPEC 12.1); `status=` and `tag=` as `--status`, `--tag`.
        A key no run has raises `expyrun.UsageError` naming the closest one."""
        from expyrun.reading import query

        texts = list(conditions)
        if status is not None:
            texts.append(f"status == {status}")
        if tag is not None:
            texts.append(f"tags ~ {tag}")
        rows = [run.row() for run in self._runs]
        kept = {id(row) for row in query.select(rows, texts)}
        return Runs([run for run, row in zip(self._runs, rows, strict=True) if id(row) in kept])

    def best(self, key: str = "result", mode: str = "min") -> Run | None:
        """The run with the lowest (`mode="max"`: highest) value of `key`: a metric's last value, or
        `"result"` (also `result.NAME`, a dotted config key); runs without a number there are passed over."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        scored = [(found, run) for run in self._runs if (found := _score(run, key)) is not None]
        if not scored:
            return None
        pick = min if mode == "min" else max
        return pick(scored, key=lambda pair: pair[0])[1]

    def to_pandas(self) -> Any:
        """One row per run: name, dir, status, started, duration, result, tags, every config key
        (dotted columns) and each metric's summary (`metric.NAME` its last value, `.min`, `.max`)."""
        pandas = _pandas()
        rows = []
        for run in self._runs:
            record = run.record
            row: dict[str, Any] = {
                "name": record.get("name"), "dir": str(run.dir), "status": record.get("status"),
                "started": record.get("started_at"), "duration": record.get("duration_s"),
                "result": record.get("result"), "tags": run.tags,
            }  # fmt: skip
            _flatten(run.config, "", row)
            summaries = record.get("metrics")
            if isinstance(summaries, dict):
                for name, summary in summaries.items():
                    if isinstance(summary, dict):
                        row[f"metric.{name}"] = _float(summary.get("last"))
                        row[f"metric.{name}.min"] = _float(summary.get("min"))
                        row[f"metric.{name}.max"] = _float(summary.get("max"))
            rows.append(row)
        frame = pandas.DataFrame.from_records(rows)
        if len(frame):
            frame["started"] = pandas.to_datetime(frame["started"], errors="coerce", utc=True, format="ISO8601")
        return frame

    def metrics_frame(self, name: str) -> Any:
        """Metric `name` of every run in long format: columns `dir`, `step`, `value` (pandas)."""
        import numpy

        pandas = _pandas()
        dirs: list[str] = []
        counts: list[int] = []
        steps: list[Any] = []
        values: list[Any] = []
        for run in self._runs:
            run_steps, run_values = metric_files.read_series(run.dir, name)
            if run_steps:
                dirs.append(str(run.dir))
                counts.append(len(run_steps))
                steps.append(numpy.asarray(run_steps, dtype=numpy.int64))
                values.append(numpy.asarray(run_values, dtype=numpy.float64))
        if not dirs:
            return pandas.DataFrame({"dir": pandas.Series([], dtype=object), "step": pandas.Series([], dtype="int64"),
                                     "value": pandas.Series([], dtype="float64")})  # fmt: skip
        categories = pandas.Categorical.from_codes(numpy.repeat(numpy.arange(len(dirs)), counts), categories=dirs)
        return pandas.DataFrame(
            {"dir": categories, "step": numpy.concatenate(steps), "value": numpy.concatenate(values)}
        )


def _pandas() -> Any:
    """pandas, the one dependency of the frames (the `analysis` extra)."""
    import importlib

    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise ImportError("expyrun's data frames need pandas: pip install 'expyrun[analysis]'") from None


def _flatten(node: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in node.items():
        if isinstance(value, dict) and value:
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = value


def _float(value: Any) -> Any:
    return metric_files.parse_number(value) if isinstance(value, str) else value


_MISSING = object()


def _lookup(run: Run, dotted: str) -> Any:
    if dotted in ("name", "status"):
        return run.record.get(dotted, _MISSING)
    node: Any = run.config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _equal(found: Any, wanted: Any) -> bool:
    if found is _MISSING:
        return False
    if isinstance(found, bool) or isinstance(wanted, bool):
        return found is wanted
    return bool(found == wanted)


def _score(run: Run, key: str) -> float | None:
    """The number `best` compares for a run, or None."""
    if key == "result" or key.startswith("result."):
        found: Any = run.result
        for part in key.split(".")[1:]:
            found = found.get(part) if isinstance(found, dict) else None
    else:
        summary = run.summary(key)
        found = summary.get("last") if summary is not None else _lookup(run, key)
    if isinstance(found, bool) or not isinstance(found, (int, float)) or math.isnan(found):
        return None
    return float(found)


def runs(folder: str | Path = ".") -> Runs:
    """Every run below `folder` (any depth, study trials included), as `expyrun list` finds them.

    A folder whose `run.json` is not a run record is skipped with a warning naming it; a run still
    marked running whose process is gone has status `died`.
    """
    from expyrun.reading.runs import effective_status, iter_runs, record_problem, slurm_jobs

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"expyrun.runs: {folder} is not a folder")
    found: list[Run] = []
    for run_dir, record in iter_runs(root):
        problem = record_problem(record)
        if problem is not None:
            warnings.warn(f"skipping {os.path.join(run_dir, 'run.json')}: not a run record ({problem})", stacklevel=2)
            continue
        found.append(Run(run_dir, record))
    jobs = slurm_jobs([run.record for run in found])
    for run in found:
        run.record["status"] = effective_status(run.record, jobs)
    found.sort(key=lambda r: (r.record.get("name") or "", r.record.get("started_at") or "", str(r.dir)))
    return Runs(found)


class Sweep:
    """A sweep's points shaped like the sweep: (variants, grid key 1, ..., grid key n, zip), axes of
    size 1 left out. `sweep[0, 1]` is a Run (None for a point that has no run yet), `sweep[:, 0]` a
    sub-sweep; `sweep.results` the results as nested lists of the same shape."""

    def __init__(self, points: list[Run | None], shape: tuple[int, ...], axes: tuple[str, ...], folder: Path) -> None:
        self.points = points
        self.shape = shape
        self.axes = axes  # what each axis is: `variant`, a grid key, or `zip`
        self.dir = folder

    def __repr__(self) -> str:
        return f"Sweep({str(self.dir)!r}, shape={self.shape}, axes={self.axes})"

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def runs(self) -> Runs:
        return Runs([run for run in self.points if run is not None])

    @property
    def results(self) -> Any:
        return self._nested(lambda run: None if run is None else run.result)

    def _nested(self, value: Any) -> Any:
        def build(offset: int, depth: int) -> Any:
            if depth == len(self.shape):
                return value(self.points[offset])
            stride = math.prod(self.shape[depth + 1 :])
            return [build(offset + i * stride, depth + 1) for i in range(self.shape[depth])]

        return build(0, 0)

    def __getitem__(self, key: Any) -> Any:
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) > len(self.shape):
            raise IndexError(f"sweep of shape {self.shape} indexed with {len(keys)} positions")
        keys = keys + (slice(None),) * (len(self.shape) - len(keys))
        chosen: list[list[int]] = []
        for axis, (size, part) in enumerate(zip(self.shape, keys, strict=True)):
            if isinstance(part, slice):
                chosen.append(list(range(size))[part])
            elif isinstance(part, int) and not isinstance(part, bool):
                if not -size <= part < size:
                    raise IndexError(f"position {part} of axis {axis} ({self.axes[axis]}) of size {size}")
                chosen.append([part % size])
            else:
                raise TypeError(f"a sweep is indexed by positions and slices, not {part!r}")
        strides = [math.prod(self.shape[axis + 1 :]) for axis in range(len(self.shape))]
        flat = [0]
        for positions, stride in zip(chosen, strides, strict=True):
            flat = [offset + p * stride for offset in flat for p in positions]
        kept = [axis for axis, part in enumerate(keys) if isinstance(part, slice)]
        if not kept:
            return self.points[flat[0]]
        shape = tuple(len(chosen[axis]) for axis in kept)
        return Sweep([self.points[i] for i in flat], shape, tuple(self.axes[a] for a in kept), self.dir)


def sweep(folder: str | Path) -> Sweep:
    """The points of the sweep in `folder` (`.../sweep.{i}`), in order, shaped like the sweep."""
    from expyrun.run.record import load_record

    root = Path(folder)
    rows = _sweep_points(root)
    points: list[Run | None] = []
    for row in rows:
        run_dir = row.get("run_dir") or row.get("reused")
        record = load_record(run_dir) if isinstance(run_dir, str) else None
        points.append(Run(run_dir, record) if isinstance(run_dir, str) and record else None)
    shape, axes = sweep_shape(rows)
    return Sweep(points, shape, axes, root)


def _sweep_points(root: Path) -> list[dict[str, Any]]:
    try:
        from expyrun.sweep import record

        data = record.read_sweep(root)
        points = data["points"]
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as error:
        raise FileNotFoundError(
            f"expyrun.sweep: {root} is not a sweep folder (no readable sweep.json: {error})"
        ) from None
    return [p for p in points if isinstance(p, dict)]


def sweep_shape(rows: list[dict[str, Any]]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The shape of a sweep told from its points in order: variants outermost, then each grid key
    (first outermost), the zip innermost (SPEC 9), axes of size 1 left out.

    A key's axis is found by how many consecutive points share its first value (its period): keys of
    the same period move together (the zip, or a grid key); each axis's size is the ratio of the
    next outer period to its own.
    """
    count = len(rows)
    if count == 0:
        return (0,), ("points",)
    variants = list(dict.fromkeys(row.get("variant") for row in rows))
    per_variant = count // max(len(variants), 1)
    first = rows[:per_variant]
    values: list[dict[str, Any]] = [row["values"] if isinstance(row.get("values"), dict) else {} for row in first]
    fixed = set(values[0])
    periods: dict[int, list[str]] = {}
    for key in values[0]:
        period = next((i for i, v in enumerate(values) if v.get(key) != values[0].get(key)), per_variant)
        if period == per_variant:
            continue  # constant in a variant: the variant's own value, or a size-1 grid key
        periods.setdefault(period, []).append(key)
        fixed.discard(key)
    shape: list[int] = []
    axes: list[str] = []
    if len(variants) > 1:
        shape.append(len(variants))
        axes.append("variant")
    outer = per_variant
    for period in sorted(periods, reverse=True):
        keys = periods[period]
        shape.append(outer // period)
        axes.append(keys[0] if len(keys) == 1 else "zip")
        outer = period
    if math.prod(shape or [1]) != count:  # the points do not look like a product: one flat axis
        return (count,), ("points",)
    if not shape:
        return (count,), ("points",)
    return tuple(shape), tuple(axes)
