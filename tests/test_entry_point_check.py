"""The static entry point check's fast path (bytes methods, no pattern to compile, no `ast`) never
passes a parameter list that `ast` would refuse, and takes the common ones without `ast`."""

from __future__ import annotations

import ast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from expyrun.run.entry_point import _accepts_two_positional, _two_plain_parameters

names = st.sampled_from(["name", "config", "x_1", "_", "é", "1a"])
annotations = st.sampled_from(["", "", "", ": str", ": dict[str, int]", ": 'Cfg'", ': "a.B"', ": typing.Any",
                               ": x[y][z]", ": str | None", ": [int]", ": x[y=1]", ":", ": x[*y]"])  # fmt: skip
prefixes = st.sampled_from(["", "", "", "", "*", "**"])  # (mostly plain parameters)
defaults = st.sampled_from(["", "", "", "", "=None", " = 1"])
parameters = st.tuples(prefixes, names, annotations, defaults)
separators = st.sampled_from([",", ", ", ",\n    ", " ,", ", # c\n", ", /,"])
noise = st.sampled_from(["", "", "", "", "", "", "(", ")", "[", "]", "#", "/", "*", ":"])


@st.composite
def parameter_lists(draw: st.DrawFn) -> str:
    """Parameter lists as people write them (stars, annotations, defaults, comments, a trailing
    comma), now and then with a stray character."""
    listed = [
        prefix + name + annotation + default
        for prefix, name, annotation, default in draw(st.lists(parameters, max_size=4))
    ]
    text = ""
    for position, parameter in enumerate(listed):
        text += (draw(separators) if position else "") + parameter
    text += draw(st.sampled_from(["", ",", ",\n"]))
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(noise) + text[at:]


def ast_accepts(parameters: str) -> bool | None:
    """What the `ast` path concludes of `def main(parameters)`; None when it is no valid Python."""
    try:
        tree = ast.parse(f"def main({parameters}):\n    pass\n")
    except SyntaxError:
        return None
    return _accepts_two_positional(tree.body[0].args)  # type: ignore[attr-defined]


@given(parameter_lists())
@example("name, config")
@example("name: str, config: dict[str, int],")
@example("a: x[y][z], b")
@example("name, /")
def test_the_fast_path_passes_only_what_ast_accepts(parameters):
    accepted = ast_accepts(parameters)  # (invalid Python is refused before, by compiling the module)
    if accepted is not None and _two_plain_parameters(parameters.encode()):
        assert accepted


@pytest.mark.parametrize(
    "parameters",
    [
        "name, config",
        "name,config,",
        "name: str, config: dict[str, Any]",
        "\n    name: 'str',\n    config: cfg.Config,\n",
    ],
)
def test_the_common_signatures_take_the_fast_path(parameters):
    assert _two_plain_parameters(parameters.encode())


@pytest.mark.parametrize("parameters", ["config", "name, config, extra", "name, config=None", "*args", "a, /, b"])
def test_other_signatures_are_left_to_ast(parameters):
    assert not _two_plain_parameters(parameters.encode())
