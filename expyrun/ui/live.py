"""Curves of running runs, followed: each poll reads only the lines written since the last one.

Why: the page asks for a running run's curves every second; reading a 100,000-step `metrics.jsonl`
whole each time costs 0.05 s per curve, and keeping every point would make the server's memory
grow with the runs. A followed curve keeps where it stopped reading (`track.metrics.follow_series`)
and at most `buckets` buckets, each holding its lowest and highest point (as `reduce.py`, so no
spike is lost; at most `2 * buckets` points drawn, as for an ended run): when a new bucket would be
one too many, neighbours are merged and a bucket covers twice as many points. The file is read and
bucketed a part (1 MB) at a time, so the first view of a long run holds one part's points, not the
run's. Memory: at most `FOLLOWED` curves of `5 * buckets` numbers. A curve whose file shrank or was
replaced (the end of a run gives lines their times) is read again.

Cost (`benchmarks/bench_ui.py`'s first view of 20 running runs of 100,000 steps, 6.3 MB each): about
55 ms of CPU per curve to parse (`follow_series`: 8-9 ms a megabyte) and 3 ms to bucket, 1.26 s for
the 20 (it was 2.14 s) on 2 busy cores. What is left is two `findall` and one `map(float)` per part;
using the second core (a process pool: 1.30 -> 0.73 s for the 20, measured) is not done: processes
that must die with the viewer, and their memory.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expyrun.track import metrics as metric_files
from expyrun.ui.reduce import reduce_points

FOLLOWED = 256  # curves followed at once; the least recently asked is dropped


class GrowingCurve:
    """The min/max buckets of one metric of one run, extended as its file grows.

    Each bucket is `[low step, low value, high step, high value, points]` (a bucket of NaN and
    infinities only has low `inf` and high `-inf`: counted, not drawn); at most `buckets` of them,
    each of `width` points but the last. A long first read picks its width once from the file's
    size (`coming`), so its points are bucketed a bucket at a time (`min`/`max` of a list slice, C
    loops) rather than one at a time and merged again and again.
    """

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets
        self.width = 1  # points per bucket
        self.kept: list[list[float]] = []
        self.count = 0
        self.offset = 0
        self.last_step: int | None = None
        self.identity: tuple[int, int] | None = None  # the file's (device, inode)

    def add(self, steps: Sequence[int], values: Sequence[float], coming: int = 0) -> None:
        """Points in the order logged; `coming`: about how many more the same read will add."""
        count = len(values)
        if not count:
            return
        if not self.kept:
            while count + coming > self.width * self.buckets:
                self.width *= 2
        self.count += count
        finite = _all_finite(values)
        at = 0
        while at < count:
            last = self.kept[-1] if self.kept else None
            if last is None or last[4] >= self.width:
                if len(self.kept) >= self.buckets:
                    self._merge()  # the width doubles: the last bucket may have room again
                    continue
                last = [0, math.inf, 0, -math.inf, 0]
                self.kept.append(last)
            end = min(count, at + self.width - int(last[4]))
            _extend(last, steps, values, at, end, finite)
            at = end

    def _merge(self) -> None:
        merged = []
        for first, second in zip(self.kept[::2], self.kept[1::2], strict=False):
            low = first if first[1] <= second[1] else second
            high = first if first[3] >= second[3] else second
            merged.append([low[0], low[1], high[2], high[3], first[4] + second[4]])
        if len(self.kept) % 2:
            merged.append(self.kept[-1])
        self.kept = merged
        self.width *= 2

    def points(self) -> dict[str, Any]:
        steps: list[int] = []
        values: list[float] = []
        for low_step, low, high_step, high, _ in self.kept:
            if low > high:  # no number in the bucket
                continue
            if low_step == high_step and low == high:  # one point (two values at one step are two points)
                steps.append(int(low_step))
                values.append(low)
                continue
            for step, value in sorted(((low_step, low), (high_step, high))):
                steps.append(int(step))
                values.append(value)
        return {"steps": steps, "values": values, "count": self.count}


def _extend(bucket: list[float], steps: Sequence[int], values: Sequence[float], start: int, end: int,
            finite: bool) -> None:  # fmt: skip
    """Points `start:end` into `bucket`: its lowest and highest number (the first of equals) stay."""
    bucket[4] += end - start
    if end - start == 1:
        value = values[start]
        if value - value == 0:
            if value < bucket[1]:
                bucket[0], bucket[1] = steps[start], value
            if value > bucket[3]:
                bucket[2], bucket[3] = steps[start], value
        return
    chunk = list(values[start:end])
    if finite:
        low_at = chunk.index(min(chunk))
        high_at = chunk.index(max(chunk))
    else:
        numbers = [i for i, value in enumerate(chunk) if value - value == 0]
        if not numbers:
            return
        low_at = min(numbers, key=chunk.__getitem__)
        high_at = max(numbers, key=chunk.__getitem__)
    if chunk[low_at] < bucket[1]:
        bucket[0], bucket[1] = steps[start + low_at], chunk[low_at]
    if chunk[high_at] > bucket[3]:
        bucket[2], bucket[3] = steps[start + high_at], chunk[high_at]


def _all_finite(values: Sequence[float]) -> bool:
    """Whether every value is a number (a sum holding NaN or an infinity is none; one that overflows
    says no too, and the slower check per bucket then decides)."""
    total = sum(values)
    return total - total == 0


class Curves:
    """The followed curves of running runs, by (run folder, metric)."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._curves: OrderedDict[tuple[str, str], GrowingCurve] = OrderedDict()

    def read(self, run_dir: Path, name: str) -> dict[str, Any]:
        """The curve of `name` in a running run, extended by what was written since it was last asked."""
        key = (str(run_dir), name)
        with self._lock:
            curve = self._curves.pop(key, None)
        try:
            stat = os.stat(run_dir / metric_files.METRICS_FILE)
            identity: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except OSError:
            stat, identity = None, None
        if curve is None or curve.identity != identity or (stat is not None and stat.st_size < curve.offset):
            curve = GrowingCurve(self.buckets)
            curve.identity = identity
        start = curve.offset
        for part in metric_files.follow_series(run_dir, name, curve.offset, curve.last_step):
            coming = len(part.values) * part.left // max(1, part.end - start)  # the rest, at this part's density
            curve.add(part.steps, part.values, coming)
            curve.offset, curve.last_step = part.end, part.last_step
        with self._lock:
            self._curves[key] = curve
            while len(self._curves) > FOLLOWED:
                self._curves.popitem(last=False)
        return curve.points()


def ended(run_dir: Path, name: str, buckets: int) -> dict[str, Any]:
    """The curve of an ended run, read whole (from `.metrics.columns` when current) and reduced."""
    steps, values = metric_files.read_series(run_dir, name)
    kept_steps, kept_values = reduce_points(steps, values, buckets)
    return {"steps": kept_steps, "values": kept_values, "count": len(values)}
