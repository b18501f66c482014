"""Curves of running runs, followed: each poll reads only the lines written since the last one.

Why: the page asks for a running run's curves every second; reading a 100,000-step `metrics.jsonl`
whole each time costs 0.15 s per curve, and keeping every point would make the server's memory
grow with the runs. A followed curve keeps where it stopped reading (`track.metrics.read_series_from`)
and a fixed number of buckets, each holding its lowest and highest point (as `reduce.py`, so no
spike is lost): when there are more than `2 * buckets` buckets, neighbours are merged and a bucket
covers twice as many points. Memory: at most `FOLLOWED` curves of `4 * buckets` numbers. A curve
whose file shrank or was replaced (the end of a run gives lines their times) is read again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from expyrun.track import metrics as metric_files
from expyrun.ui.reduce import reduce_points

FOLLOWED = 256  # curves followed at once; the least recently asked is dropped


class GrowingCurve:
    """The min/max buckets of one metric of one run, extended as its file grows."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets
        self.width = 1  # points per bucket
        self.kept: list[list[float]] = []  # [low step, low value, high step, high value, points]
        self.count = 0
        self.offset = 0
        self.last_step: int | None = None
        self.identity: tuple[int, int] | None = None  # the file's (device, inode)

    def add(self, steps: list[float], values: list[float]) -> None:
        if not self.kept and len(values) > 2 * self.buckets:  # a first long read: whole buckets at C speed
            while len(values) > self.width * 2 * self.buckets:
                self.width *= 2
            whole = len(values) // self.width * self.width
            for start in range(0, whole, self.width):
                self._bucket(steps[start : start + self.width], values[start : start + self.width])
            steps, values = steps[whole:], values[whole:]
        for step, value in zip(steps, values, strict=True):
            self.count += 1
            if value - value != 0:  # NaN or an infinity: not drawn
                continue
            last = self.kept[-1] if self.kept else None
            if last is None or last[4] >= self.width:
                self.kept.append([step, value, step, value, 1])
                if len(self.kept) > 2 * self.buckets:
                    self._merge()
                continue
            last[4] += 1
            if value < last[1]:
                last[0], last[1] = step, value
            if value > last[3]:
                last[2], last[3] = step, value

    def _bucket(self, steps: list[float], values: list[float]) -> None:
        self.count += len(values)
        finite = [i for i, v in enumerate(values) if v - v == 0]
        if not finite:
            return
        low = min(finite, key=values.__getitem__)
        high = max(finite, key=values.__getitem__)
        self.kept.append([steps[low], values[low], steps[high], values[high], len(values)])
        if len(self.kept) > 2 * self.buckets:
            self._merge()

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
            for step, value in sorted({(low_step, low), (high_step, high)}):
                steps.append(int(step))
                values.append(value)
        return {"steps": steps, "values": values, "count": self.count}


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
        steps, values, curve.offset, curve.last_step = metric_files.read_series_from(
            run_dir, name, curve.offset, curve.last_step
        )
        curve.add(list(steps), list(values))
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
