"""Reading a growing `metrics.jsonl` without one `json.loads` per line (`track.metrics.follow_series`,
the runs viewer's first view of a running run) gives what `json.loads` per line gives (`read_metrics`):
property tests on files written by `Writer` and by other programs, cut into parts anywhere."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from expyrun.track import metrics

# names that could fool a text search: the searched name inside others, quotes, braces, commas
NAMES = ["loss", "val loss", "a/b", 'x, "loss', "loss\\", "{a}", "é", "lo\nss", "acc"]
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
)
other_values = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.sampled_from(["nan", "-inf", "1.5"]))
# a line: ("writer", step or None, values) written by `Writer.log`, or ("program", mapping) by json.dumps
writer_lines = st.tuples(
    st.just("writer"),
    st.one_of(st.none(), st.integers(-5, 10**6)),
    st.dictionaries(st.sampled_from(NAMES), numbers, min_size=1),
)


def program_lines(steps: st.SearchStrategy[int | None]) -> st.SearchStrategy[tuple[Any, ...]]:
    """Lines another program writes with json.dumps: a step first (as Writer does) or none, maybe
    values that are not numbers, maybe nested mappings holding the searched name."""
    values = st.one_of(numbers, other_values, st.dictionaries(st.sampled_from(NAMES), numbers, max_size=3))
    return st.tuples(st.just("program"), steps, st.dictionaries(st.sampled_from([*NAMES, "time", "nested"]), values))


# lines that are not JSON, or look like Writer's but hold a step or a value that is no number
RAW = [
    '{"step": 3, "loss": 1',
    "not json",
    "",
    "[1, 2]",
    '{"step": 1.5, "loss": 2}',
    '{"step": 4, "loss": true}',
    '{"step": 5, "loss": "1.5"}',
    '{"step": 6, "loss": NaN, "acc": -Infinity}',
    '{"step": 7, "loss": 1e400}',
    '{"step": 8, "loss": "Infinity"}',
    '{"step": 9, "\\u006coss": 2}',
    '{"step": 10, "a\\/b": 2, "loss": 3}',
]
raw_lines = st.tuples(st.just("raw"), st.sampled_from(RAW))
# a file of lines shaped as Writer writes them (the fast path), or of any lines (line by line)
shaped_files = st.lists(
    st.one_of(writer_lines, program_lines(st.integers(-5, 10**6)), st.tuples(st.just("raw"), st.sampled_from(RAW[4:]))),
    min_size=1,
    max_size=30,
)
any_files = st.lists(
    st.one_of(writer_lines, program_lines(st.one_of(st.none(), st.integers(-5, 10**6))), raw_lines),
    min_size=1,
    max_size=40,
)


def write_lines(folder: Path, lines: list[tuple[Any, ...]]) -> None:
    writer = metrics.Writer(str(folder), time.time())
    path = folder / metrics.METRICS_FILE
    for line in lines:
        if line[0] == "writer":
            writer.log(line[1], line[2])
        else:
            text = (
                line[1]
                if line[0] == "raw"
                else json.dumps({**({} if line[1] is None else {"step": line[1]}), **line[2]})
            )
            with open(path, "a", encoding="utf-8") as file:
                file.write(text + "\n")


def comparable(points: list[tuple[int, float]]) -> list[tuple[int, str]]:
    """Points with NaN made comparable (NaN != NaN)."""
    return [(int(step), repr(float(value))) for step, value in points]


@settings(max_examples=400)
@given(st.one_of(shaped_files, any_files), st.integers(1, 400), st.sampled_from(NAMES))
def test_following_a_file_part_by_part_reads_what_json_per_line_reads(lines, chunk_bytes, name):
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_lines(folder, lines)
        expected = metrics.read_metrics(folder).get(name, [])
        parts = list(metrics.follow_series(folder, name, chunk_bytes=chunk_bytes))
        followed = [(s, v) for part in parts for s, v in zip(part.steps, part.values, strict=True)]
        assert comparable(followed) == comparable(expected)
        assert parts[-1].end == (folder / metrics.METRICS_FILE).stat().st_size and parts[-1].left == 0
        steps, values = metrics.read_series(folder, name)  # the whole file at once (no columns file)
        assert comparable(list(zip(steps, values, strict=True))) == comparable(expected)


@given(st.lists(writer_lines, min_size=2, max_size=30), st.integers(0, 1000))
def test_a_reader_that_stops_anywhere_and_goes_on_later_misses_and_repeats_nothing(lines, where):
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_lines(folder, lines)
        path = folder / metrics.METRICS_FILE
        whole = path.read_bytes()
        cut = len(whole) * where // 1000  # (the file's length varies with the times written)
        path.write_bytes(whole[:cut])  # the file as a reader saw it while the run was writing
        first = metrics.read_series_from(folder, "loss")
        assert first[2] == whole.rfind(b"\n", 0, cut) + 1  # a torn last line is left for the next read
        path.write_bytes(whole)
        rest = metrics.read_series_from(folder, "loss", first[2], first[3])
        expected = metrics.read_metrics(folder).get("loss", [])
        followed = list(zip(first[0] + rest[0], first[1] + rest[1], strict=True))
        assert comparable(followed) == comparable(expected)


def test_a_line_longer_than_a_part_is_read_whole_and_a_torn_one_waits(tmp_path):
    long_name = "x" * 5000
    path = tmp_path / metrics.METRICS_FILE
    path.write_text(f'{{"step": 0, "{long_name}": 1, "loss": 2.5}}\n{{"step": 1, "loss": "nan"}}\n{{"step": 2, "lo')
    parts = list(metrics.follow_series(tmp_path, "loss", chunk_bytes=100))
    points = [(s, v) for part in parts for s, v in zip(part.steps, part.values, strict=True)]
    assert points[0] == (0, 2.5) and points[1][0] == 1 and math.isnan(points[1][1]) and len(points) == 2
    assert parts[-1].end == path.stat().st_size - len('{"step": 2, "lo') and parts[-1].last_step == 1
    assert list(metrics.follow_series(tmp_path / "missing", "loss")) == []


@given(st.one_of(shaped_files, any_files))
def test_the_names_in_a_part_are_those_json_per_line_finds(lines):
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_lines(folder, lines)
        data = (folder / metrics.METRICS_FILE).read_bytes()
        assert metrics.names_in(data) == list(metrics.read_metrics(folder))
        torn = data[: data.rfind(b"\n", 0, len(data) - 1) + 1] + data[data.rfind(b"\n", 0, len(data) - 1) + 1 :][:5]
        assert metrics.names_in(torn) == metrics.names_in(data[: data.rfind(b"\n", 0, len(data) - 1) + 1])
