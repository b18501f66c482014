"""What `expyrun list` prints when asked a question (SPEC 12.1): which runs (`--where`, `--status`,
`--tag`), in which order (`--sort`, `--top`), which columns (`--columns`, `--metrics`), per group
(`--group-by`: count, mean ± std, min, max) and in which format (table, csv, json, jsonl).

The conditions themselves are `expyrun.reading.query`'s (one parser, one evaluator for `list`, the
Python API and the viewer). csv and json hold the table's columns with values unshortened (numbers
stay numbers), config keys dotted, so a spreadsheet or `pandas.read_csv` gets what a person sees.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from expyrun.errors import UsageError, did_you_mean
from expyrun.reading import query

FORMATS = ("table", "csv", "json", "jsonl")
_ABSENT = query.ABSENT


@dataclass(frozen=True)
class Question:
    """The options of `list` beyond DIR and `--json`, parsed and checked."""

    where: tuple[query.Condition, ...] = ()
    sort: str | None = None
    group_by: str | None = None
    columns: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    tag: str | None = None
    top: int | None = None
    format: str = "table"

    @property
    def plain(self) -> bool:
        """Nothing asked: the classic table."""
        return self == Question()


def add_options(parser: argparse.ArgumentParser) -> None:
    """The query options of `expyrun list`."""
    parser.add_argument("--where", action="append", default=[], metavar="EXPR", help="KEY OP VALUE (repeatable)")
    parser.add_argument("--sort", metavar="[-]KEY", help="sort by KEY (-KEY: descending); runs without it last")
    parser.add_argument("--group-by", metavar="KEY", help="one row per value of KEY: count, mean ± std, min, max")
    parser.add_argument("--columns", metavar="K,...", help="the columns to show besides run_dir, name, status")
    parser.add_argument("--metrics", metavar="M,...", help="metrics whose last value is shown (and aggregated)")
    parser.add_argument("--status", metavar="S", help="only runs with this status (S,S...: any of them)")
    parser.add_argument("--tag", metavar="T", help="only runs with this tag (a glob: best*)")
    parser.add_argument("--top", metavar="N", help="keep the first N rows after sorting")
    parser.add_argument("--format", choices=FORMATS, default="table", help="table (stderr) or csv|json|jsonl (stdout)")


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def question(options: argparse.Namespace) -> Question:
    """The checked options; a malformed one is a one-line `UsageError` before any run is read."""
    top = None
    if options.top is not None:
        try:
            top = int(options.top)
        except ValueError:
            top = 0
        if top < 1:
            raise UsageError(f"--top {options.top}: not a positive whole number", "e.g. --top 10")
    statuses = _names(options.status)
    for status in statuses:
        if status not in query.STATUSES:
            hint = did_you_mean(status, query.STATUSES, f"a status is one of {', '.join(query.STATUSES)}")
            raise UsageError(f"--status {status}: no such status", hint)
    if options.tag is not None:
        from expyrun.track.annotations import check_tag

        check_tag(options.tag)
    if options.json and options.format != "table":
        raise UsageError("--json and --format: give one", "--json: run.json's fields; --format: the table's columns")
    return Question(
        where=tuple(query.parse(text) for text in options.where),
        sort=options.sort,
        group_by=options.group_by,
        columns=_names(options.columns),
        metrics=_names(options.metrics),
        status=statuses,
        tag=options.tag,
        top=top,
        format=options.format,
    )


def check_keys(rows: Sequence[dict[str, Any]], asked: Question) -> None:
    """Refuse any key no listed run has, with the closest one it does have (one line, exit 2)."""
    query.require_keys(rows, [c.key for c in asked.where], "--where")
    if asked.sort:
        query.require_keys(rows, [asked.sort.removeprefix("-")], "--sort")
    if asked.group_by:
        query.require_keys(rows, [asked.group_by], "--group-by")
    query.require_keys(rows, [c for c in asked.columns if c not in _OWN], "--columns")
    if not rows:
        return
    for metric in asked.metrics:
        if not any(query.value(row, f"metric.{metric}") is not _ABSENT for row in rows):
            names = {name for row in rows for name in (row.get("metrics") or {})}
            hint = did_you_mean(metric, names, "no listed run logged metrics" if not names else None)
            raise UsageError(f"--metrics {metric}: no listed run has this metric", hint)


def select(rows: list[dict[str, Any]], asked: Question) -> list[dict[str, Any]]:
    """The runs asked for, in the order asked, before `--top` (which applies to the printed rows)."""
    check_keys(rows, asked)
    if asked.status:
        rows = [row for row in rows if row.get("status") in asked.status]
    if asked.tag is not None:
        tag = asked.tag
        rows = [row for row in rows if any(fnmatch.fnmatchcase(t, tag) for t in row.get("tags") or ())]
    if asked.where:
        rows = [row for row in rows if all(c.matches(row) for c in asked.where)]
    if asked.sort and not asked.group_by:
        rows = query.sort_rows(rows, asked.sort)
    return rows


# Columns that are not query keys: where the run is, and what `list` computes.
_OWN = {"run_dir", "run", "commit", "differs"}


def columns(rows: Sequence[dict[str, Any]], asked: Question, table: bool) -> list[str]:
    """The columns of the answer; a table names the run by its path below DIR (`run`)."""
    metrics = [f"metric.{m}" for m in asked.metrics]
    if asked.columns:
        lead = ["run", "status"] if table else ["run_dir", "name", "status"]
        return [*lead, *[c for c in asked.columns if c not in lead], *[m for m in metrics if m not in asked.columns]]
    tags = ["tags"] if not table or any(row.get("tags") for row in rows) else []
    if table:
        return ["run", "status", "started", "duration", "commit", "result", *tags, *metrics, "differs"]
    differing = list(dict.fromkeys(key for row in rows for key in row.get("differs", {})))
    return ["run_dir", "name", "status", "started", "duration", "commit", "result", *tags, *metrics, *differing]


def cell_value(row: dict[str, Any], column: str) -> Any:
    """A row's value of a column, whole (None when it has none)."""
    if column == "run":
        return row["path"]
    if column == "run_dir":
        return row.get("list_dir", row["path"])
    if column == "commit":
        return (row.get("git") or {}).get("commit")
    if column == "differs":
        return row.get("differs", {})
    if column == "tags":
        return list(row.get("tags") or [])
    found = query.value(row, column)
    return None if found is _ABSENT else found


def answer(rows: list[dict[str, Any]], asked: Question) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and one mapping per printed row: a run each, or a group each (`--group-by`)."""
    table = asked.format == "table"
    if asked.group_by:
        header, groups = _groups(rows, asked, table)
        return header, groups[: asked.top]
    shown = rows[: asked.top]
    header = columns(shown, asked, table)
    return header, [{column: cell_value(row, column) for column in header} | {"__row__": row} for row in shown]


def _groups(rows: list[dict[str, Any]], asked: Question, table: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per value of the group key: the count, and mean, std, min, max of the result and of
    each `--metrics` metric (numbers only: a run without one does not count for it)."""
    key = asked.group_by or ""
    by_value: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
    for row in rows:
        found = cell_value(row, key)
        by_value.setdefault(json.dumps(found, sort_keys=True, default=str), (found, []))[1].append(row)
    measured = ["result", *(f"metric.{m}" for m in asked.metrics)]
    measured = [m for m in measured if any(_number(cell_value(row, m)) is not None for row in rows)]
    out = []
    for found, members in by_value.values():
        group: dict[str, Any] = {key: found, "count": len(members)}
        for name in measured:
            numbers = [n for n in (_number(cell_value(row, name)) for row in members) if n is not None]
            group.update(_statistics(name, numbers))
        out.append(group)
    out = _sorted_groups(out, key, asked.sort)
    stats = [f"{name}.{part}" for name in measured for part in ("mean", "std", "min", "max")]
    return [key, "count", *stats], out


def _sorted_groups(groups: list[dict[str, Any]], key: str, sort: str | None) -> list[dict[str, Any]]:
    """Groups by their value of KEY, or by `--sort`: the group key, a measured mean, or `count`."""
    descending = bool(sort and sort.startswith("-"))
    name = (sort or key).removeprefix("-")
    field = name if name in (key, "count") else f"{name}.mean"
    present = [g for g in groups if g.get(field) is not None]
    present.sort(key=lambda g: query.sort_key(g[field]), reverse=descending)
    return present + [g for g in groups if g.get(field) is None]


def _number(found: Any) -> float | None:
    if isinstance(found, bool) or not isinstance(found, (int, float)):
        return None
    return float(found)


def _statistics(name: str, numbers: list[float]) -> dict[str, float | None]:
    """Mean, sample standard deviation (0 for one value), min and max; None for no numbers."""
    if not numbers:
        return dict.fromkeys((f"{name}.mean", f"{name}.std", f"{name}.min", f"{name}.max"))
    mean = math.fsum(numbers) / len(numbers)
    spread = math.fsum((n - mean) ** 2 for n in numbers) / (len(numbers) - 1) if len(numbers) > 1 else 0.0
    return {
        f"{name}.mean": mean,
        f"{name}.std": math.sqrt(spread),
        f"{name}.min": min(numbers),
        f"{name}.max": max(numbers),
    }


def _plain(value: Any) -> Any:
    """A value as csv and json hold it: NaN and infinities as the strings run.json writes."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def write_data(header: list[str], rows: list[dict[str, Any]], fmt: str, out: io.TextIOBase | Any) -> None:
    """csv, json (one array) or jsonl (one object a line) of the answer's columns, on `out`."""
    encode = json.JSONEncoder(default=str, ensure_ascii=False, allow_nan=True).encode
    records = [{column: _plain(row.get(column)) for column in header} for row in rows]
    if fmt == "json":
        out.write(encode(records) + "\n")
    elif fmt == "jsonl":
        out.write("".join(encode(record) + "\n" for record in records))
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for record in records:
            writer.writerow(_csv_cell(record[column]) for column in header)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


_CLASSIC = ("run", "status", "started", "duration", "commit", "result", "differs")  # listing.cells' order


def table_cells(header: list[str], rows: list[dict[str, Any]], short: Any, cells: Any) -> list[list[str]]:
    """The table's text cells: a run row as `list` draws it (`cells(row)` for the classic columns),
    a group's statistics as `mean ± std`, `min`, `max` under the measured name."""
    out = []
    for row in rows:
        if "__row__" in row:
            run = row["__row__"]
            classic = dict(zip(_CLASSIC, cells(run), strict=True))
            out.append([classic[c] if c in classic else _table_text(row.get(c), short) for c in header])
        else:
            out.append([_table_text(row.get(c), short) for c in header])
    return out


def _table_text(value: Any, short: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value) or "-"
    return str(short(value, 40))


def group_table(header: list[str], groups: list[dict[str, Any]], short: Any) -> tuple[list[str], list[list[str]]]:
    """A grouped answer for people: each measured name as `mean ± std`, `min`, `max` columns."""
    measured = [column.removesuffix(".mean") for column in header if column.endswith(".mean")]
    titles = [*header[:2], *(t for m in measured for t in (f"{m} mean±std", f"{m} min", f"{m} max"))]
    rows = []
    for group in groups:
        line = [_table_text(group.get(header[0]), short), str(group["count"])]
        for m in measured:
            line += [
                _mean_std(group.get(f"{m}.mean"), group.get(f"{m}.std"), short),
                _table_text(group.get(f"{m}.min"), short),
                _table_text(group.get(f"{m}.max"), short),
            ]
        rows.append(line)
    return titles, rows


def _mean_std(mean: Any, std: Any, short: Any) -> str:
    if mean is None:
        return "-"
    return f"{short(mean)} ± {short(std)}"


def data_dir(root: str, path: str) -> str:
    """A run's folder as csv and json give it: below DIR as the user named DIR (openable from here)."""
    return root if path == "." else os.path.join(root, path)
