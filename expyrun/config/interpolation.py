"""Interpolation of environment variables and self references in string values.

Environment references (`$NAME`, `${NAME}`, `${NAME:-fallback}`, `${NAME-fallback}`) are substituted first, then self
references (`{dotted.key}`). A value that is one whole self reference is copied with its type.
References are resolved on demand and memoised, so the order of keys does not matter and cycles
are reported with their chain.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from expyrun.config.tree import MISSING, Path, copy_tree, dotted, get, set_at, split_dotted, step
from expyrun.config.yaml_reader import NO_PARSE_PREFIX
from expyrun.errors import ConfigError

FALLBACKS = (":-", "-")


@cache
def env_reference() -> re.Pattern[str]:
    """`$NAME`, `${NAME}` or the start of `${NAME:-fallback}` (fallback when unset or empty, as in a
    shell) or `${NAME-fallback}` (fallback only when unset), whose fallback ends at its balanced `}`.

    The patterns are compiled on first use: a config without `$` or `{` in its values (looked for
    first) never needs them, and compiling both cost every launch 0.2 ms."""
    return re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(\}|:-|-)|([A-Za-z_][A-Za-z0-9_]*))")


@cache
def self_reference() -> re.Pattern[str]:
    """`{dotted.key}`."""
    return re.compile(r"\{([A-Za-z0-9_][A-Za-z0-9_.\-]*)\}")


DEFAULT_SECRETS = (
    "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*API_KEY*", "*ACCESS_KEY*", "*PRIVATE_KEY*",
)  # fmt: skip
_MISSING = object()
MAX_TEXT = 1_000_000  # characters a value may expand to: `a: '{b}{b}'` chains double at every step


def convert_env_text(text: str) -> Any:
    """expyrun 0.2.1's reading of text that came from the environment."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def only_environment(text: str) -> bool:
    """Whether `text` is nothing but environment references (`${N_WORKERS:-4}`, `$A$B`): its value is
    then `convert_env_text` of what they give, and a value replacing it is read the same way."""
    position = 0
    while position < len(text):
        match = env_reference().match(text, position)
        if match is None:
            return False
        position = match.end()
        if match.group(2) in FALLBACKS:
            close = _closing_brace(text, position)
            if close is None:
                return False
            position = close + 1
    return position > 0


def is_secret(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in patterns)


class Interpolator:
    """Resolves every string of a tree in place.

    `where(path)` names the file and line of a key for messages. After `resolve_all`,
    `env_used` maps each value's path to the variables it read, and `secret_paths` holds the
    values that must be written as their reference because they carry a secret.
    """

    def __init__(
        self,
        tree: dict,
        environ: Mapping[str, str],
        secret_patterns: tuple[str, ...] | list[str],
        where: Callable[[Path], str],
    ) -> None:
        self.tree = tree
        self.environ = environ
        self.secret_patterns = secret_patterns
        self.where = where
        self.done: set[Path] = set()
        self.stack: list[Path] = []
        self.warnings: list[str] = []
        self.env_used: dict[Path, list[str]] = {}
        self.secret_paths: set[Path] = set()
        self.secret_values: dict[str, str] = {}

    def resolve_all(self) -> dict:
        self._resolve_children(self.tree, ())
        return self.tree

    def _resolve_children(self, node: dict | list, path: Path) -> None:
        """Resolve every string below `node`; the fast path of a whole-tree pass."""
        items = list(node.items()) if type(node) is dict else list(enumerate(node))
        for segment, child in items:
            kind = type(child)
            if kind is str or ((kind is dict or kind is list) and child):
                self._resolved((*path, segment), child)

    def _resolved(self, path: Path, node: Any = MISSING) -> Any:
        """The fully resolved value at `path`, resolving it first when needed."""
        if node is MISSING:
            node = get(self.tree, path)
        if path in self.done:
            return node
        if path in self.stack:
            chain = [dotted(p) for p in self.stack[self.stack.index(path) :]] + [dotted(path)]
            raise ConfigError(f"{self.where(path)}: cyclic reference: {' -> '.join(chain)}")
        self.stack.append(path)
        if isinstance(node, str):
            node = self._interpolate(node, path)
            set_at(self.tree, path, node)
        elif isinstance(node, (dict, list)):
            self._resolve_children(node, path)
        self.stack.pop()
        self.done.add(path)
        return node

    def _interpolate(self, text: str, path: Path) -> Any:
        if text.startswith(NO_PARSE_PREFIX):
            return text[len(NO_PARSE_PREFIX) :]
        from_env: list[tuple[int, int]] = []
        if "$" in text:
            text, from_env, whole = self._substitute_env(text, path)
            if whole:
                value = convert_env_text(text)
                if not isinstance(value, str):
                    return value
        if "{" in text:
            return self._substitute_references(text, path, from_env)
        return text

    def _substitute_env(self, text: str, path: Path) -> tuple[str, list[tuple[int, int]], bool]:
        """Replace environment references.

        Returns the text, the spans of it that came from the environment (never read again as
        references: a value holding `{word}` stays as it is), and whether the text was nothing else.
        A fallback is config text: its own references are substituted, and its self references
        are resolved afterwards like the rest of the value (as a shell or Hydra's `oc.env` does).
        """
        names: list[str] = []
        pieces, literal = self._expand_env(text, path, names)
        spans: list[tuple[int, int]] = []
        length = 0
        for piece, from_env in pieces:
            if from_env:
                spans.append((length, length + len(piece)))
            length += len(piece)
        if names:
            self.env_used[path] = names
        return "".join(piece for piece, _ in pieces), spans, bool(names) and not literal

    def _expand_env(self, text: str, path: Path, names: list[str]) -> tuple[list[tuple[str, bool]], str]:
        """`text` as pieces (text, came from the environment) and its literal text outside references.

        `names` collects every variable read, those of fallbacks included (`--explain` names them).
        """
        pieces: list[tuple[str, bool]] = []
        literal: list[str] = []
        position = 0
        while (match := env_reference().search(text, position)) is not None:
            name = match.group(1) or match.group(3)
            end = match.end()
            fallback = None
            operator = match.group(2)
            if operator in FALLBACKS:
                close = _closing_brace(text, end)
                if close is None:
                    raise ConfigError(
                        f"{self.where(path)}: `{dotted(path)}`: `${{{name}{operator}` has no closing `}}`",
                        "braces inside a fallback must be balanced: ${NAME:-{key}/sub}",
                    )
                fallback, end = text[end:close], close + 1
            literal.append(text[position : match.start()])
            pieces.append((text[position : match.start()], False))
            names.append(name)
            value = self._env_value(name, fallback is not None, path, empty_is_unset=operator == ":-")
            if value is not None:
                pieces.append((value, True))
            else:
                pieces.extend(self._expand_env(fallback or "", path, names)[0])
            position = end
        literal.append(text[position:])
        pieces.append((text[position:], False))
        return pieces, "".join(literal)

    def _env_value(self, name: str, has_fallback: bool, path: Path, empty_is_unset: bool = False) -> str | None:
        """The variable's value; None when it is unset and has a fallback.

        `empty_is_unset` is `${NAME:-fallback}`: as in every shell, an exported empty value
        (`export DATA_DIR=`) takes the fallback too; `${NAME-fallback}` keeps it.
        """
        value = self.environ.get(name)
        if is_secret(name, self.secret_patterns):
            self.secret_paths.add(path)
            if value:
                self.secret_values[value] = f"${name}"
        if has_fallback and empty_is_unset and value == "":
            return None
        if value is not None or has_fallback:
            return value
        raise ConfigError(
            f"{self.where(path)}: `{dotted(path)}`: environment variable ${name} is not set",
            f"export {name}=..., or give a fallback: ${{{name}:-value}}",
        )

    def _substitute_references(self, text: str, path: Path, from_env: list[tuple[int, int]]) -> Any:
        def is_reference(match: re.Match) -> bool:
            """Braces that came from the environment never delimit a reference."""
            return not any(start <= edge < end for start, end in from_env for edge in (match.start(), match.end() - 1))

        whole = self_reference().fullmatch(text)
        if whole and is_reference(whole):
            value = self._reference(whole.group(1), path)
            if value is _MISSING:
                return text
            return copy_tree(value)

        def replace(match: re.Match) -> str:
            if not is_reference(match):
                return match.group(0)
            value = self._reference(match.group(1), path)
            return match.group(0) if value is _MISSING else str(value)

        result = self_reference().sub(replace, text)
        if len(result) > MAX_TEXT:
            raise ConfigError(
                f"{self.where(path)}: `{dotted(path)}`: references expand to more than {MAX_TEXT:,} characters",
                "does a value repeat a reference to itself through others ({b}{b})?",
            )
        return result

    def _reference(self, key: str, path: Path) -> Any:
        node: Any = self.tree
        target: Path = ()
        for part in split_dotted(key):
            if isinstance(node, str) and target not in self.done:
                node = self._resolved(target)
            typed, node = step(node, part)
            if node is MISSING:
                self.warnings.append(
                    f"{self.where(path)}: `{dotted(path)}`: reference {{{key}}} names no key; kept as written"
                )
                return _MISSING
            target = (*target, typed)
        value = self._resolved(target)
        if any(secret[: len(target)] == target for secret in self.secret_paths):
            self.secret_paths.add(path)
        return value


def _closing_brace(text: str, start: int) -> int | None:
    """The index of the `}` closing a brace opened just before `start`, braces balanced; None if none."""
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return None
