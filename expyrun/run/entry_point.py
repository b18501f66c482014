"""Finding the entry point `module:function` inside `__code__`.

The check before a launch is static (the module file is located and parsed, not imported) so
that `--dry-run` never executes user code and a typo is reported before any folder exists.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ast

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
    source = path.read_bytes()
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as error:
        raise EntryPointError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    written = _written_parameters(source, run.function)
    if not written and not defined_at_top(source, run.function):
        raise EntryPointError(f"`__run__.__main__`: `{run.function}` is not defined in {path}")
    plain = any(_two_plain_parameters(parameters) for parameters in written)
    problem = None if plain else _static_signature_problem(source, run.function)
    if problem is not None:
        line, parameters = problem
        raise EntryPointError(
            f"{path}:{line}: `{run.function}({parameters})` cannot be called as `{run.function}(name, config)`, "
            "which is how expyrun calls the entry point",
            f"define it as `def {run.function}(name, config):` (the run's name and its resolved config)",
        )
    return path


def _written_parameters(source: bytes, name: str) -> list[bytes]:
    """The parameter text of every `def name(...)` written at the start of a line (without nested
    parentheses): the common entry point, found by a short pattern."""
    word = re.escape(name.encode())
    return re.findall(rb"^(?:async[ \t]+)?def[ \t]+" + word + rb"[ \t]*\(([^()]*)\)", source, re.M)


def _two_plain_parameters(parameters: bytes) -> bool:
    """Whether a parameter list is two plain names, each maybe annotated with a (dotted, quoted)
    name and brackets without nested ones (`config: dict[str, Any]`), maybe with a trailing comma: the
    common `def main(name, config)`, read with bytes methods (compiling a pattern that says this
    cost every launch ~0.3 ms). False sends the source to `ast` (`_static_signature_problem`)."""
    if b"=" in parameters or b"*" in parameters:
        return False
    text = parameters
    while (start := text.find(b"[")) != -1:  # a bracket pair holds the commas of `dict[str, Any]`
        end = text.find(b"]", start)
        if end == -1 or b"[" in text[start + 1 : end]:
            return False
        text = text[:start] + text[end + 1 :]
    parts = [part.strip() for part in text.split(b",")]
    if parts[-1] == b"":  # a trailing comma
        parts.pop()
    return len(parts) == 2 and all(_plain_parameter(part) for part in parts)


def _plain_parameter(text: bytes) -> bool:
    """`name` or `name: annotation` (the annotation's brackets already taken out), ASCII words only."""
    name, colon, annotation = text.partition(b":")
    if not name.strip().replace(b"_", b"a").isalnum():
        return False
    return not colon or annotation.strip().translate(None, b"\"'._").isalnum()


def _static_signature_problem(source: bytes, name: str) -> tuple[int, str] | None:
    """`(line, parameters)` when the module's own undecorated top-level `def name(...)` cannot take
    `(name, config)`; None when it can, or when the source does not say (decorated, assigned,
    imported, defined under an `if`: the run child checks the function itself before calling it).

    Read from the module's syntax tree (a few milliseconds to import `ast` and parse): only when
    `_two_plain_parameters` did not recognise the common `def main(name, config)`.
    """
    import ast

    definition = None
    for node in ast.parse(source).body:  # the last binding of the name at the top level wins
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            definition = node
        elif _defines(ast.Module(body=[node], type_ignores=[]), name):
            definition = None
    if definition is None or definition.decorator_list or _accepts_two_positional(definition.args):
        return None
    return definition.lineno, ast.unparse(definition.args)


def _accepts_two_positional(arguments: ast.arguments) -> bool:
    """Whether parameters like these take exactly two positional arguments and nothing more."""
    positional = len(arguments.posonlyargs) + len(arguments.args)
    required = positional - len(arguments.defaults)
    keyword_only_required = any(default is None for default in arguments.kw_defaults)
    return (positional >= 2 or arguments.vararg is not None) and required <= 2 and not keyword_only_required


def defined_at_top(source: bytes, name: str) -> bool:
    """Whether the module defines `name` (the entry point; a study's own sampler or pruner class):
    a top-level `def`/`class`/assignment found by a pattern (the common case, without importing
    `ast`), else by walking the module's syntax tree."""
    word = re.escape(name.encode())
    if re.search(rb"^(?:async[ \t]+def|def|class)[ \t]+" + word + rb"\b|^" + word + rb"[ \t]*[:=]", source, re.M):
        return True
    import ast

    return _defines(ast.parse(source), name)


def _defines(tree: ast.Module, name: str) -> bool:
    import ast

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


def _config_argument(function: Callable[..., Any], config: dict[str, Any]) -> Any:
    """The config as the entry point asks for it: dict, dataclass instance or DictConfig.

    An entry point without annotations (the common case) gets its dict without `inspect` being
    imported (a tenth of a small run's cost).
    """
    if not getattr(function, "__annotations__", None):
        return config
    import inspect
    import typing

    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return config
    parameter = next((p for p in parameters if p.name == "config"), parameters[1] if len(parameters) > 1 else None)
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return config
    try:
        annotation = typing.get_type_hints(function).get(parameter.name, parameter.annotation)
    except Exception:  # unresolvable string annotations: fall back to a plain dict
        return config
    if isinstance(annotation, type) and hasattr(annotation, "__dataclass_fields__"):
        return _structured(annotation, config)
    if getattr(annotation, "__name__", "") == "DictConfig" and "omegaconf" in getattr(annotation, "__module__", ""):
        from omegaconf import OmegaConf

        return OmegaConf.create(config)
    return config


def _structured(schema: type, config: dict[str, Any]) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), config)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        detail = str(error).splitlines()[0]
        where = f"`{key}`: " if key else ""
        raise ConfigMismatch(f"config does not match {schema.__name__}: {where}{detail}") from None


class ConfigMismatch(Exception):
    """The config does not fit the entry point's dataclass, or the entry point cannot be called as
    `function(name, config)`: found after the run folder exists, said in one line, no traceback."""


class SignatureMismatch(ConfigMismatch):
    """The entry point takes other arguments than `(name, config)` (seen only once it is imported:
    a function assigned, imported or decorated in its module)."""


def _signature_problem(function: Callable[..., Any]) -> str | None:
    """Why a plain Python function cannot be called as `function(name, config)`, read from its
    code object (no `inspect`: a tenth of a small run's cost); None when it can, or for other callables."""
    code = getattr(function, "__code__", None)
    if code is None or not hasattr(function, "__defaults__"):
        return None
    positional = code.co_argcount
    required = positional - len(function.__defaults__ or ())
    keyword_only = code.co_varnames[positional : positional + code.co_kwonlyargcount]
    missing_keywords = [name for name in keyword_only if name not in (function.__kwdefaults__ or {})]
    has_varargs = bool(code.co_flags & 0x04)  # inspect.CO_VARARGS
    if (positional >= 2 or has_varargs) and required <= 2 and not missing_keywords:
        return None
    names = ", ".join(code.co_varnames[:positional])
    return f"`{function.__name__}({names})` cannot be called as `{function.__name__}(name, config)`"


def call_entry_point(run: RunSection, import_root: Path, config: dict[str, Any]) -> Any:
    """Import the entry point from `import_root` and call it as `function(name, config)`."""
    if not sys.path or sys.path[0] != str(import_root):
        sys.path.insert(0, str(import_root))
    module = importlib.import_module(run.module)
    function = getattr(module, run.function, None)
    if not callable(function):
        raise AttributeError(f"`{run.function}` is not a function of module `{run.module}` ({module.__file__})")
    problem = _signature_problem(function)
    if problem is not None:
        raise SignatureMismatch(f"{problem}, which is how expyrun calls the entry point ({module.__file__})")
    return function(run.name, _config_argument(function, config))
