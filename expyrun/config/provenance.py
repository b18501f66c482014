"""Where each value of a resolved config came from: a file and line, the command line,
an environment variable, or a default set by expyrun."""

from __future__ import annotations

from collections.abc import Iterable

from expyrun.config.tree import Path, dotted
from expyrun.config.yaml_reader import YamlFile


class Provenance:
    def __init__(self, sources: list[YamlFile]) -> None:
        self.sources = sources
        self.cli_paths: set[Path] = set()
        self.default_paths: set[Path] = set()
        self.trial_paths: set[Path] = set()
        self.sweep_paths: set[Path] = set()
        self.env_used: dict[Path, list[str]] = {}
        # A stored resolved config (`config.yml`): the only paths it still interpolates; None otherwise.
        self.stored_pending: set[Path] | None = None
        self._lines: dict[Path, tuple[str, int]] | None = None

    def copy(self) -> Provenance:
        """A provenance of its own for a config derived from this one (a sweep point, a trial, a run
        folder's copy): what it changes (`sweep_paths`, `trial_paths`, `env_used`) is not seen by the
        config it came from nor by the other points. The files and their line map are shared: read only."""
        new = Provenance(self.sources)
        new.cli_paths = set(self.cli_paths)
        new.default_paths = set(self.default_paths)
        new.trial_paths = set(self.trial_paths)
        new.sweep_paths = set(self.sweep_paths)
        new.env_used = dict(self.env_used)
        new.stored_pending = None if self.stored_pending is None else set(self.stored_pending)
        new._lines = self._line_map()
        return new

    def _line_map(self) -> dict[Path, tuple[str, int]]:
        """The last file (in merge order) that wrote each key, built once on demand."""
        if self._lines is None:
            lines: dict[Path, tuple[str, int]] = {}
            for source in self.sources:
                display = source.display
                lines.update((path, (display, line)) for path, line in source.lines.items())
            self._lines = lines
        return self._lines

    def where(self, path: Path) -> str:
        """`file.yml:LINE` of a key (or of its closest written ancestor), for messages."""
        if _covered(path, self.cli_paths):
            return f"--{dotted(path)}"
        lines = self._line_map()
        for end in range(len(path), 0, -1):
            found = lines.get(path[:end])
            if found is not None:
                return f"{found[0]}:{found[1]}"
        return self.sources[-1].display if self.sources else "config"

    def origin(self, path: Path) -> str:
        """The origin shown by `--explain`."""
        if _covered(path, self.trial_paths):
            return "trial"
        if _covered(path, self.sweep_paths):
            return "sweep"
        if _covered(path, self.cli_paths):
            return "cli"
        if path in self.default_paths:
            return "default"
        for end in range(len(path), 0, -1):
            names = self.env_used.get(path[:end])
            if names is not None:
                variables = ", ".join(f"${name}" for name in dict.fromkeys(names))
                return f"env {variables} ({self.where(path)})"
        return self.where(path)


def _covered(path: Path, paths: Iterable[Path]) -> bool:
    return any(path[: len(p)] == p for p in paths) if paths else False
