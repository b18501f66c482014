"""The study's progress bar on the terminal (rich): for the person watching, never in outputs.log."""

from __future__ import annotations

from typing import Any

from expyrun.console import visible
from expyrun.tune.spec import StudySpec


class Progress:
    """A rich progress bar on the terminal: trials done / total and the best value so far."""

    def __init__(self, spec: StudySpec, study: Any) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # Straight to the terminal: the bar is for the person watching, not for outputs.log. The study
        # and objective names are the config's: never read as markup (`[/]` is a markup error that
        # ended the study), control characters shown escaped.
        self.terminal = open("/dev/tty", "w")  # noqa: SIM115 (closed in close())
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[best]}", markup=False),
            console=Console(file=self.terminal, force_terminal=True),
            redirect_stdout=False, redirect_stderr=False,  # prints belong in outputs.log
        )  # fmt: skip
        self.single = len(spec.directions) == 1
        self.label = visible(spec.labels[0], one_line=True) if spec.objective_names is not None else ""
        self.task = self.progress.add_task(visible(spec.study_name, one_line=True), total=spec.n_trials, best="")
        self.progress.start()
        self.update(study)

    @classmethod
    def open(cls, spec: StudySpec, study: Any) -> Progress | None:
        try:
            return cls(spec, study)
        except OSError:  # no controlling terminal after all
            return None

    def update(self, study: Any) -> None:
        trials = study.get_trials(deepcopy=False)
        finished = sum(1 for t in trials if t.state.is_finished())
        best = ""
        if any(t.state.name == "COMPLETE" for t in trials):
            if self.single:
                best = f"best {self.label + ' ' if self.label else ''}{study.best_value:.6g}"
            else:
                best = f"Pareto front: {len(study.best_trials)} trials"
        self.progress.update(self.task, completed=finished, best=best)

    def close(self) -> None:
        self.progress.stop()
        self.terminal.close()
