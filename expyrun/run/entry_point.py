"""Finding the entry point `module:function` inside `__code__`.

The check before a launch is static (the module file is located and parsed, not imported) so
that `--dry-run` never executes user code and a typo is reported before any folder exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

from expyrun.config import RunSection
from expyrun.errors import EntryPointError


def module_file(code: Path, module: str) -> Path | None:
    """The file of `module` under `code` (a module file or a package's `__init__.py`)."""
    base = code.joinpath(*module.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_path(code: Path, module: str) -> Path:
    """The package folder or single module file that holds `module` (what gets snapshotted)."""
    top = module.split(".")[0]
    folder = code / top
    return folder if folder.is_dir() else code / f"{top}.py"


def check_entry_point(run: RunSection) -> Path:
    """Fail with a clear message when `run.main` cannot be found; returns the module file."""
    if not run.code.is_dir():
        raise EntryPointError(f"`__run__.__code__`: folder {run.code} does not exist")
    path = module_file(run.code, run.module)
    if path is None:
        raise EntryPointError(
            f"`__run__.__main__`: module `{run.module}` not found in {run.code}",
            "set __run__.__code__ to the folder that holds the package, or launch from there",
        )
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as error:
        raise EntryPointError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    if not _defines(tree, run.function):
        raise EntryPointError(f"`__run__.__main__`: `{run.function}` is not defined in {path}")
    return path


def _defines(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == name:
                    return True
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
        if isinstance(node, (ast.If, ast.Try)):  # definitions under `if`/`try` count too
            inner = ast.Module(body=[*getattr(node, "body", []), *getattr(node, "orelse", [])], type_ignores=[])
            if _defines(inner, name):
                return True
    return False
