"""The one loop (`expyrun.campaign.loop`), in-process against the fake executor: which point runs
when, failures in a row, stop signals and their grace, the end. Milliseconds each: nothing executes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from expyrun.campaign.loop import Next, PointFailed, run_points
from expyrun.execute.contract import Executor, Job
from expyrun.execute.fake import FakeExecutor
from expyrun.execute.outcome import Outcome


class _Resolved:
    """What the loop reads of a resolved config when it finishes a record."""

    @staticmethod
    def scrub(value: Any) -> Any:
        return value


class _Prepared:
    """A prepared run folder as the loop sees it: a record written to `run.json`."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True)
        self.run_dir = run_dir
        self.record: dict[str, Any] = {"status": "queued"}
        self.resolved = _Resolved()
        self.debug = True

    def write_record(self) -> None:
        (self.run_dir / "run.json").write_text(json.dumps(self.record, default=str))

    def release_reserve(self) -> None:
        pass

    def status(self) -> str:
        return json.loads((self.run_dir / "run.json").read_text())["status"]


class Points:
    """A proposer of `count` points; `fail_to_prepare` lists the points whose preparation fails."""

    def __init__(self, folder: Path, count: int, fail_to_prepare: tuple[int, ...] = (), on_tick: Any = None) -> None:
        self.folder = folder
        self.left = list(range(count))
        self.fail_to_prepare = fail_to_prepare
        self.on_tick = on_tick
        self.told: list[tuple[int, str]] = []
        self.started_points: list[int] = []
        self.prepared: dict[int, _Prepared] = {}
        self.ticks = 0

    def next(self) -> int | Next:
        return self.left.pop(0) if self.left else Next.EXHAUSTED

    def prepare(self, point: int) -> Job | None:
        if point in self.fail_to_prepare:
            raise PointFailed(Outcome("failed", 1, exception={"type": "TemplateError", "message": "no"}))
        prepared = self.prepared[point] = _Prepared(self.folder / f"exp.{point}")
        return Job(prepared, lambda: None, {"EXPYRUN_SWEEP_POINT": str(point)}, reads_result=False)  # type: ignore[arg-type]

    def gather(self, prepared: Any) -> None:
        prepared.record["gathered"] = True

    def started(self, job: Job) -> None:
        self.started_points.append(int(job.environment["EXPYRUN_SWEEP_POINT"]))

    def tell(self, job: Job, outcome: Outcome) -> None:
        self.told.append((int(job.environment["EXPYRUN_SWEEP_POINT"]), str(outcome.status)))

    def tick(self) -> None:
        self.ticks += 1
        if self.on_tick is not None:
            self.on_tick(self)


def lasting(waits: dict[int, int], status: str = "completed", failing: tuple[int, ...] = ()):
    """A script: point n ends after `waits[n]` waits (default 1), failed when in `failing`."""
    seen: dict[int, int] = {}

    def script(job: Job, number: int) -> Outcome | None:
        point = int(job.environment["EXPYRUN_SWEEP_POINT"])
        seen[point] = seen.get(point, 0) + 1
        if seen[point] < waits.get(point, 1):
            return None
        return Outcome("failed", 1) if point in failing else Outcome(status, 0)

    return script


def test_the_fake_and_local_executors_declare_the_contract():
    from expyrun.execute.local import LocalExecutor

    assert isinstance(FakeExecutor(), Executor)
    assert isinstance(LocalExecutor(), Executor)


def test_a_freed_slot_takes_the_next_point_and_no_point_left_ends_it(tmp_path):
    points = Points(tmp_path, 4)
    executor = FakeExecutor(slots=2, script=lasting({0: 3, 1: 1, 2: 1, 3: 1}), ends_per_wait=2)
    result = run_points(points, executor, poll_s=0)
    assert executor.events[:4] == ["submit 0", "submit 1", "end 1 completed", "submit 2"]
    assert [e for e in executor.events if e.startswith("submit")] == [f"submit {n}" for n in range(4)]
    assert sorted(points.told) == [(n, "completed") for n in range(4)]
    assert result.exit_code == 0 and result.stopped_by is None and executor.closed
    assert all(p.status() == "completed" and p.record["gathered"] for p in points.prepared.values())


def test_each_point_is_recorded_running_before_the_proposer_hears_it_started(tmp_path):
    seen: list[str] = []

    class Watching(Points):
        def started(self, job: Job) -> None:
            seen.append(job.prepared.status())  # type: ignore[attr-defined]

    run_points(Watching(tmp_path, 2), FakeExecutor(), poll_s=0)
    assert seen == ["running", "running"]


def test_failures_in_a_row_stop_taking_points_when_a_limit_is_given(tmp_path):
    points = Points(tmp_path, 10)
    executor = FakeExecutor(script=lasting({}, failing=tuple(range(1, 10))))
    result = run_points(points, executor, max_failures=3, poll_s=0)
    assert points.told == [(0, "completed"), (1, "failed"), (2, "failed"), (3, "failed")]
    assert result.stopped_by_failures and result.exit_code == 1


def test_a_success_resets_the_count_of_failures_in_a_row(tmp_path):
    points = Points(tmp_path, 6)
    result = run_points(points, FakeExecutor(script=lasting({}, failing=(0, 1, 3, 4))), max_failures=3, poll_s=0)
    assert len(points.told) == 6 and not result.stopped_by_failures


def test_without_a_limit_failures_never_stop_the_points(tmp_path):
    points = Points(tmp_path, 5)
    result = run_points(points, FakeExecutor(script=lasting({}, failing=(0, 1, 2, 3, 4))), poll_s=0)
    assert len(points.told) == 5 and result.exit_code == 1


def test_a_point_that_fails_to_be_prepared_fails_alone(tmp_path):
    points = Points(tmp_path, 4, fail_to_prepare=(1,))
    executor = FakeExecutor(slots=2, script=lasting({0: 5}))
    result = run_points(points, executor, poll_s=0)
    assert sorted(points.told) == [(0, "completed"), (2, "completed"), (3, "completed")]
    assert result.exit_code == 1 and [o.status for o in result.outcomes].count("failed") == 1
    assert "stop" not in " ".join(executor.events)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_gives_running_points_their_grace_and_starts_none(tmp_path, signum, code):
    def stop_once(points: Points) -> None:
        if points.ticks == 2:
            os.kill(os.getpid(), signum)

    points = Points(tmp_path, 6, on_tick=stop_once)
    executor = FakeExecutor(slots=2, script=lasting({n: 100 for n in range(6)}))
    previous = signal.getsignal(signum)
    result = run_points(points, executor, grace_s=7.5, poll_s=0)
    assert executor.stopped == (7.5, signum)
    assert "stop 2 grace 7.5" in executor.events
    assert [e for e in executor.events if e.startswith("submit")] == ["submit 0", "submit 1"]
    assert sorted(points.told) == [(0, "interrupted"), (1, "interrupted")]
    assert result.stopped_by == signum and result.exit_code == code
    assert all(p.status() == "interrupted" for p in points.prepared.values())
    assert signal.getsignal(signum) == previous  # the loop's handler is gone again


def test_a_third_stop_signal_ends_the_grace_at_once(tmp_path):
    class Patient(FakeExecutor):
        """Jobs end only once the grace is over (stop(0))."""

        def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> list:
            self.events.append(f"stop grace {grace_s:g}")
            return super().stop(grace_s, signum) if grace_s == 0 else []

    def signal_thrice(points: Points) -> None:
        if points.ticks <= 3:
            os.kill(os.getpid(), signal.SIGINT)

    points = Points(tmp_path, 3, on_tick=signal_thrice)
    executor = Patient(script=lasting({0: 100}))
    result = run_points(points, executor, grace_s=10, poll_s=0)
    stops = [e for e in executor.events if e.startswith("stop grace")]
    assert stops == ["stop grace 10", "stop grace 10", "stop grace 0"]
    assert points.told == [(0, "interrupted")] and result.exit_code == 130


def test_a_point_prepared_while_a_stop_signal_came_is_recorded_interrupted_not_executed(tmp_path):
    class SignalledWhilePreparing(Points):
        def prepare(self, point: int) -> Job | None:
            job = super().prepare(point)
            os.kill(os.getpid(), signal.SIGTERM)
            return job

    points = SignalledWhilePreparing(tmp_path, 3)
    executor = FakeExecutor()
    result = run_points(points, executor, poll_s=0)
    assert executor.submitted == [] and points.told == [(0, "interrupted")]
    assert points.prepared[0].status() == "interrupted" and result.exit_code == 143


def test_a_proposer_with_nothing_now_is_asked_again_after_a_wait(tmp_path):
    class Later(Points):
        def next(self) -> int | Next:
            if self.ticks < 3 and self.left:
                return Next.WAIT
            return super().next()

    points = Later(tmp_path, 2)
    result = run_points(points, FakeExecutor(), poll_s=0)
    assert points.told == [(0, "completed"), (1, "completed")] and result.exit_code == 0


def test_a_callers_own_handler_stops_the_loop_through_the_shared_list(tmp_path):
    received: list[int] = []

    def usr2_said_stop(points: Points) -> None:
        if points.ticks == 2:
            received.append(signal.SIGTERM)  # what a Slurm node's USR2 handler does

    points = Points(tmp_path, 4, on_tick=usr2_said_stop)
    executor = FakeExecutor(script=lasting({0: 100}))
    result = run_points(points, executor, grace_s=3, poll_s=0, received=received)
    assert executor.stopped == (3, signal.SIGTERM) and result.exit_code == 143
    assert points.told == [(0, "interrupted")]


def test_the_study_pools_declare_the_task_pool_contract(tmp_path):
    from expyrun.execute.contract import TaskPool
    from expyrun.execute.inline_pool import InlinePool
    from expyrun.execute.trial_workers import WorkerPool

    workers = WorkerPool(1, {}, tmp_path)  # no worker starts before a task
    inline = InlinePool(1, lambda _signum: None)
    try:
        assert isinstance(workers, TaskPool) and isinstance(inline, TaskPool)
    finally:
        workers.close()
        inline.close()
