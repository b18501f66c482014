"""`expyrun list [DIR] [--json]`: every run below DIR, with what differs between runs of a name.

The table is drawn by `expyrun.text.table`, not rich, on a terminal as into a pipe: 10,000 runs
must list in under a second, and rich's Table alone took 5 s for them.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.reading.runs import effective_status, iter_runs, record_problem, slurm_jobs
from expyrun.run.status import Status
from expyrun.text.results import pairs_text, result_text
from expyrun.text.table import render
from expyrun.track.annotations import read as read_annotations
from expyrun.verify.last import last_verdict_word

COLUMNS = ("run", "status", "started", "duration", "commit", "result", "differs")


def collect(root: Path, warn: Callable[[str], None] = console.warning) -> list[dict[str, Any]]:
    """One row per run: its record plus `path` and the config values that differ within its name.

    `warn` says which folders are skipped (the runs viewer, reading the folder every second, says
    each once)."""
    collecting = gc.isenabled()
    gc.disable()  # thousands of small records and no cycles: the collector's scans only cost
    try:
        rows = []
        prefix = len(str(root)) + 1
        for run_dir, record in iter_runs(root):
            problem = record_problem(record)
            if problem is not None:
                warn(f"skipping {os.path.join(run_dir, 'run.json')}: not a run record ({problem})")
                continue
            record["path"] = run_dir[prefix:] or "."
            _annotate(record, run_dir)
            rows.append(record)
        jobs = slurm_jobs(rows)  # one squeue call for every queued or running Slurm run, if any
        for row in rows:
            row["status"] = effective_status(row, jobs)
        rows.sort(key=lambda r: (r.get("name") or "", r.get("started_at") or "", r["path"]))
        _mark_differences(rows)
        return rows
    finally:
        if collecting:
            gc.enable()


def _annotate(record: dict[str, Any], run_dir: str) -> None:
    """The run's tags and note (`annotations.json`) on its row, when it has any."""
    found = read_annotations(run_dir)
    if found.tags:
        record["tags"] = list(found.tags)
    if found.note:
        record["note"] = found.note
    verdict = last_verdict_word(run_dir)
    if verdict is not None:  # SPEC 14: a run's last verify verdict
        record["verified"] = verdict


_ABSENT = object()


def _differing(values: list[Any], prefix: str, out: list[str]) -> None:
    """Dotted keys whose values are not all equal, descending only into subtrees that differ.

    Equal subtrees are recognised by one C-level comparison, so runs of a sweep that share most
    of their config cost next to nothing.
    """
    first = values[0]
    if all(v == first and type(v) is type(first) for v in values):
        return
    if all(isinstance(v, dict) for v in values):
        keys = dict.fromkeys(k for v in values for k in v)
        for key in keys:
            _differing([v.get(key, _ABSENT) for v in values], f"{prefix}{key}.", out)
        return
    out.append(prefix[:-1])


def _value_at(config: Any, dotted_key: str) -> Any:
    node = config
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _mark_differences(rows: list[dict[str, Any]]) -> None:
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_name[row.get("name") or ""].append(row)
    for group in by_name.values():
        configs = [row.get("config") or {} for row in group]
        differing: list[str] = []
        _differing(configs, "", differing)
        for row, config in zip(group, configs, strict=True):
            row["differs"] = {key: _value_at(config, key) for key in differing}


def _short_time(value: str | None) -> str:
    """The start as recorded (the launching host's local time), to the second."""
    return value[:19].replace("T", " ") if value else "-"


def _duration(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


_ENCODE = json.JSONEncoder(default=str, check_circular=False).encode  # records hold no cycles


def _short(value: Any, width: int = 24) -> str:
    kind = type(value)
    if value is None:
        return "-"
    if kind is float:
        return f"{value:.6g}"
    if kind is bool:
        return "true" if value else "false"
    text = value if kind is str else str(value) if kind is int else _ENCODE(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def cells(row: dict[str, Any]) -> list[str]:
    """The row's cells, in `COLUMNS` order, each short enough to keep the table one line per run."""
    commit = (row.get("git") or {}).get("commit") or "-"
    differs = " ".join(f"{k}={_short(v, 16)}" for k, v in row.get("differs", {}).items())
    return [
        row["path"], row["status"], _short_time(row.get("started_at")), _duration(row.get("duration_s")),
        commit[:8], _result(row), differs or "",
    ]  # fmt: skip


def _result(row: dict[str, Any]) -> str:
    """A trial's values, named when its study names its objectives (`loss=0.12 accuracy=0.9`), a
    study's best trial the same way (or its Pareto front's size), else the run's result."""
    trial = row.get("trial") or {}
    result = row.get("result")
    named = trial.get("objectives") or (result.get("objectives") if isinstance(result, dict) else None)
    if isinstance(named, dict):
        return pairs_text(list(named.items()))
    if isinstance(result, list) and result and all(isinstance(t, dict) and "params" in t for t in result):
        return f"{len(result)} on the Pareto front"
    return result_text(trial.get("values") if trial.get("values") is not None else result)


_STYLES: dict[str, str] = {Status.FAILED: "red", Status.DIED: "red", Status.INTERRUPTED: "yellow"}


def render_rows(rows: list[dict[str, Any]], colour: bool = False, width: int | None = None) -> str:
    """The table of runs; `colour` and `width` are the terminal's (failed runs red, interrupted yellow)."""
    table = [cells(row) for row in rows]
    styles = [_STYLES.get(row["status"]) for row in rows]
    columns: tuple[str, ...] = COLUMNS
    if any(row.get("tags") for row in rows):  # SPEC 12.2: tags shown by list
        columns = (*COLUMNS[:-1], "tags", COLUMNS[-1])
        table = [
            [*cell[:-1], " ".join(row.get("tags") or ()) or "-", cell[-1]]
            for cell, row in zip(table, rows, strict=True)
        ]
    if any(row.get("verified") for row in rows):  # SPEC 14: the last verify verdict
        columns = (*columns[:-1], "verified", columns[-1])
        table = [[*cell[:-1], row.get("verified") or "-", cell[-1]] for cell, row in zip(table, rows, strict=True)]
    if any(row.get("slurm") for row in rows) or len({row.get("host") for row in rows}) > 1:  # where each ran
        columns = (*columns[:2], "host", *columns[2:])
        hosts = [(row.get("slurm") or {}).get("node") or row.get("host") or "-" for row in rows]
        table = [[*cell[:2], _short(host), *cell[2:]] for cell, host in zip(table, hosts, strict=True)]
    return render(columns, table, styles, colour=colour, width=width)


def _terminal() -> tuple[bool, int | None]:
    """Whether stderr takes colour, and its width: only a terminal does, unless NO_COLOR or TERM=dumb say no."""
    if not sys.stderr.isatty():
        return False, None
    colour = not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    try:
        width = os.get_terminal_size(sys.stderr.fileno()).columns or None
    except OSError:
        width = None
    return colour, width


def add_list_options(parser: Any) -> None:
    """`list`'s query options (SPEC 12.1), defined with the code that answers them."""
    from expyrun.browse.report import add_options

    add_options(parser)


def sort_values(args: list[str]) -> list[str]:
    """`--sort -result` as `--sort=-result`: argparse takes a value starting with `-` for an option."""
    out: list[str] = []
    for arg in args:
        if out and out[-1] == "--sort" and arg.startswith("-") and arg != "--":
            out[-1] = f"--sort={arg}"
        else:
            out.append(arg)
    return out


def list_runs(root: Path, as_json: bool, options: Any = None) -> int:
    """Print the runs below `root`: the table on stderr, or JSON / the asked format on stdout."""
    asked = None
    if options is not None and hasattr(options, "where"):
        from expyrun.browse.report import question

        asked = question(options)  # checked before any run is read
    rows = collect(root)
    if asked is not None and not asked.plain:
        return _answer(root, rows, asked, as_json)
    if as_json:
        sys.stdout.write("".join(_ENCODE(row) + "\n" for row in rows))  # one encoder, not one per row
        return 0
    colour, width = _terminal()
    sys.stderr.write(render_rows(rows, colour, width) + f"{len(rows)} runs in {root}\n")
    return 0


def _answer(root: Path, rows: list[dict[str, Any]], asked: Any, as_json: bool) -> int:
    """`list` with query options: the selected runs (or groups) as a table, csv, json or jsonl."""
    from expyrun.browse import report

    total = len(rows)
    rows = report.select(rows, asked)
    if as_json:
        sys.stdout.write("".join(_ENCODE(row) + "\n" for row in rows[: asked.top]))
        return 0
    for row in rows:
        row["list_dir"] = report.data_dir(str(root), row["path"])
    header, shown = report.answer(rows, asked)
    if asked.format != "table":
        report.write_data(header, shown, asked.format, sys.stdout)
        return 0
    colour, width = _terminal()
    if asked.group_by:
        titles, table = report.group_table(header, shown, _short)
        styles: list[str | None] = [None] * len(table)
        count = f"{len(shown)} groups of {len(rows)} runs ({total} in {root})\n"
    else:
        titles, table = header, report.table_cells(header, shown, _short, cells)
        styles = [_STYLES.get(row["status"]) for row in shown]
        matching = f" ({len(rows)} matching)" if len(shown) < len(rows) < total else ""
        of = f"{len(shown)} of " if len(shown) < total else ""
        count = f"{of}{total} runs in {root}{matching}\n"
    sys.stderr.write(render(titles, table, styles, colour=colour, width=width) + count)
    return 0
