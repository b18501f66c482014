"""Property tests of the config engine's building blocks."""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expyrun.config.dump import _BlockWriter, _libyaml_dump, dump_yaml
from expyrun.config.inheritance import merge_into
from expyrun.config.interpolation import Interpolator
from expyrun.config.tree import flatten, unflatten
from expyrun.config.yaml_reader import YamlFile, parse_yaml
from expyrun.errors import ConfigError

keys = st.text(alphabet="abcdefgh_", min_size=1, max_size=4)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6))
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)
configs = st.dictionaries(keys, trees, max_size=5)


@given(configs)
def test_flatten_unflatten_round_trip(config):
    assert unflatten(flatten(config)) == config


@given(configs)
def test_flatten_has_one_entry_per_leaf_with_its_value(config):
    for path, value in flatten(config).items():
        node = config
        for segment in path:
            node = node[segment]
        assert node == value
        assert not isinstance(value, (dict, list)) or not value


FILE = YamlFile(Path("x.yml"), "x.yml", None, {}, [])


@given(configs, configs)
def test_merge_keeps_every_child_leaf_and_untouched_parent_leaves(parent, child):
    merged = copy.deepcopy(parent)
    merge_into(merged, copy.deepcopy(child), "pass", FILE, (), [])
    merged_flat = flatten(merged)
    for path, value in flatten(child).items():
        if value == {}:  # an empty mapping merges into the parent's mapping and adds nothing
            continue
        assert merged_flat[path] == value
    child_prefixes = {path[:i] for path in flatten(child) for i in range(1, len(path) + 1)}
    for path, value in flatten(parent).items():
        if not any(path[:i] in child_prefixes for i in range(1, len(path) + 1)):
            assert merged_flat[path] == value


@given(configs, configs)
def test_merge_is_idempotent(parent, child):
    once = copy.deepcopy(parent)
    merge_into(once, copy.deepcopy(child), "pass", FILE, (), [])
    twice = copy.deepcopy(once)
    merge_into(twice, copy.deepcopy(child), "pass", FILE, (), [])
    assert once == twice


reference_text = st.lists(
    st.one_of(
        st.text(alphabet="ab{}$:-._!P0", max_size=6),
        keys.map(lambda k: "{" + k + "}"),
        keys.map(lambda k: "$" + k.upper()),
        keys.map(lambda k: "${" + k.upper() + ":-" + k + "}"),
        keys.map(lambda k: "${" + k.upper() + "-" + k + "}"),
    ),
    max_size=4,
).map("".join)
interpolated = st.dictionaries(
    keys,
    st.one_of(reference_text, st.lists(reference_text, max_size=3), st.dictionaries(keys, reference_text, max_size=3)),
    max_size=6,
)


@settings(max_examples=300)
@given(interpolated, st.dictionaries(st.sampled_from(["A", "AB", "HG", "B_"]), st.text(max_size=4)))
def test_interpolation_raises_only_config_errors(config, environ):
    with contextlib.suppress(ConfigError):
        Interpolator(copy.deepcopy(config), environ, ["*TOKEN*"], lambda path: "x.yml:1").resolve_all()


@given(st.dictionaries(keys, st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False)), min_size=1))
def test_whole_references_keep_types(values):
    config = dict(values)
    config.update({f"ref_{key}": "{" + key + "}" for key in values})
    resolved = Interpolator(config, {}, [], lambda path: "x.yml:1").resolve_all()
    for key, value in values.items():
        assert resolved[f"ref_{key}"] == value and type(resolved[f"ref_{key}"]) is type(value)


# --- The YAML fast path against PyYAML ------------------------------------------------------------
# expyrun composes nodes with libyaml and builds the common scalars itself; whatever it builds must
# be what `yaml.load(CSafeLoader)` gives, except where expyrun refuses on purpose: keys that are not
# strings or contain `.`, and tags (never generated here: no `!` in the text below).

REFERENCE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Digits of other scripts, superscripts, circled and full-width digits: `str.isdigit` and `int()`
# accept some of them, YAML's `[0-9]` does not.
UNICODE_DIGITS = "\u0663\u00b2\u00b3\u00b9\u2460\uff11\u07c1\u096b\u1811\U0001d7d9"
SCALAR_WORDS = [
    "true", "True", "TRUE", "false", "yes", "Yes", "NO", "no", "on", "Off", "y", "n", "Y",
    "null", "Null", "NULL", "~", "", ".inf", "-.inf", "+.INF", ".Inf", ".nan", ".NaN", ".NAN", "inf", "nan",
    "0", "-0", "+0", "00", "007", "08", "0_7", "010", "0o17", "0O17", "0x1F", "0X1f", "-0x_1f", "0b101", "+0b1_0",
    "0b12", "1:20", "-1:20", "190:20:30", "1:60", "1:20.5", "1_000", "1__0", "_1", "1_", "+1", "-1", "+-1",
    "1e5", "1E5", "1e+5", "1.0e+5", "1.5e-3", "-1.5E+03", "1.e5", ".5", "5.", "-.5", "1_0.5_0", "._5",
    "1.2.3", "0.", "1.0", "6.8523015e+5", "685.230_15e+03", "2020-01-01", "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5", "2020-1-1", "2020-01-01x", "=", "<<", "1\u00b2", "1\u0663", "\u0663",
    "\uff11\uff12", "\u00b2", "1\u00b2.5", "1e\u00b2", "0x\u0663", "1_\u0663", "\u0663.5",
]  # fmt: skip
NUMBER_DIGITS = st.text(alphabet="0123456789" + UNICODE_DIGITS[:4], min_size=1, max_size=4)
numbers = st.builds(
    lambda sign, whole, sep, frac, exp: sign + whole + sep + frac + exp,
    st.sampled_from(["", "+", "-"]),
    st.lists(NUMBER_DIGITS, min_size=1, max_size=3).map("_".join),
    st.sampled_from(["", ".", ":", "_"]),
    st.one_of(st.just(""), NUMBER_DIGITS),
    st.one_of(st.just(""), st.builds("".join, st.lists(st.sampled_from(["e", "E", "+", "-", "1", "0"]), max_size=3))),
)
scalar_texts = st.one_of(
    st.sampled_from(SCALAR_WORDS),
    numbers,
    st.text(alphabet="0123456789_+-.:eExXoObBaflnstruyINF~ " + UNICODE_DIGITS, max_size=10),
)
yaml_keys = st.one_of(keys, scalar_texts)  # keys YAML may read as ints, floats, bools: refused


def render(node: Any, indent: str = "") -> str:
    """Block-style YAML text for a tree of ("map", items) / ("seq", items) / plain scalar text."""
    if isinstance(node, str):
        return node
    kind, items = node
    lines = []
    for item in items:
        head = f"{indent}{item[0]}:" if kind == "map" else f"{indent}-"
        value = item[1] if kind == "map" else item
        if isinstance(value, str):
            lines.append(f"{head} {value}".rstrip())
        elif value[1]:
            lines.append(head + "\n" + render(value, indent + "  ").rstrip("\n"))
        else:
            lines.append(head + (" {}" if value[0] == "map" else " []"))
    return "\n".join(lines) + "\n"


yaml_trees = st.recursive(
    scalar_texts,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: ("seq", items)),
        st.lists(st.tuples(yaml_keys, inner), max_size=4).map(lambda items: ("map", items)),
    ),
    max_leaves=20,
)
yaml_documents = st.lists(st.tuples(yaml_keys, yaml_trees), min_size=1, max_size=6).map(
    lambda items: render(("map", items))
)


def typed(value: Any) -> Any:
    """A form of a loaded value where equal means same types too (1 == 1.0 == True otherwise; nan != nan)."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


class KeyCheckingLoader(REFERENCE_LOADER):  # type: ignore[misc, valid-type]
    """PyYAML's loader, noting any written key expyrun refuses on purpose (not a string, or dotted).

    Every key counts, also one a later duplicate replaces: expyrun refuses it where it is written.
    """

    refused = False

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        mapping = super().construct_mapping(node, deep=deep)
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            self.refused = self.refused or type(key) is not str or "." in key
        return mapping


def assert_reads_like_pyyaml(document: str) -> None:
    loader = KeyCheckingLoader(document)
    try:
        expected = loader.get_single_data()
    except yaml.YAMLError:
        with pytest.raises(ConfigError):
            parse_yaml(document, "x.yml")
        return
    finally:
        loader.dispose()
    assert typed(expected) == typed(yaml.load(document, Loader=REFERENCE_LOADER))  # the checker is PyYAML
    if loader.refused:
        with pytest.raises(ConfigError):
            parse_yaml(document, "x.yml")
        return
    data, _, _ = parse_yaml(document, "x.yml")  # anything but a ConfigError is a bug
    assert typed(data) == typed(expected), document


@settings(max_examples=500, deadline=None)
@given(yaml_documents)
@example("a: 1\u00b2\nb: 1\u0663\n")
@example("a:\n- 1\u00b2\n- \u0663\n- 1_000\n- 0o17\n- 017\n- 1:20\n- 1e5\n- .inf\n- ~\n")
def test_yaml_reader_reads_scalars_like_pyyaml(document):
    assert_reads_like_pyyaml(document)


@pytest.mark.parametrize("text", SCALAR_WORDS)
def test_yaml_reader_reads_each_scalar_word_like_pyyaml(text):
    assert_reads_like_pyyaml(f"a: {text}\nb:\n- {text}\n")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1\u00b2", "1\u00b2"),  # a superscript: `int()` refuses it (was an internal error)
        ("1\u0663", "1\u0663"),  # an Arabic-Indic digit: `int()` reads 13 (was the int 13)
        ("\uff11\uff12", "\uff11\uff12"),  # full-width digits
        ("12", 12),
        ("0", 0),
        ("017", 15),  # YAML 1.1 octal, as PyYAML
        ("1_000", 1000),
        ("1:20", 80),  # sexagesimal, as PyYAML
        ("1e5", "1e5"),  # YAML 1.1 needs a dot and a signed exponent
        ("1.0e+5", 100000.0),
        ("2020-01-01", datetime.date(2020, 1, 1)),  # dates are PyYAML's dates
    ],
)
def test_yaml_reader_regressions(text, value):
    data, _, _ = parse_yaml(f"a: {text}\n", "x.yml")
    assert typed(data["a"]) == typed(value)


# --- YAML writing against PyYAML's dumper -----------------------------------------------------------
# `dump_yaml` builds the nodes itself (faster than PyYAML's generic representer); the text must be
# byte for byte what yaml.dump writes with the same dumper and options, and must load back.

dump_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # nan, inf, -0.0, 1e17 (written `1.0e+17`) included
    st.text(),  # any unicode: control characters, line breaks, quotes, `#`, `: `, leading spaces
    st.text(alphabet="ab \n\t'\"#:-", max_size=12),  # multi-line and quoting-prone text
    scalar_texts,  # strings that look like numbers, bools, nulls, dates
    st.dates(),
    st.datetimes(),
)
dump_trees = st.recursive(
    dump_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), scalar_texts), inner, max_size=4),
    ),
    max_leaves=30,
)


# Text that libyaml writes plain, in single quotes or folded: indicators, spaces, quotes, unicode.
block_text = st.one_of(
    st.text(alphabet="ab1 _-.:#,?'\"[]{}&*!|>%@`/~=\u00e9\u4e2d\u2028\U0001f600\t", max_size=12),
    st.text(alphabet="ab ", min_size=60, max_size=90),  # near libyaml's 80 columns
    st.text(alphabet="abc", min_size=120, max_size=140),  # near libyaml's 128-byte simple keys
    scalar_texts,
)
block_trees = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), block_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(block_text, inner, max_size=4)),
    max_leaves=30,
)


def pyyaml_dump(data: Any) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


@settings(max_examples=400, deadline=None)
@given(dump_trees)
@example({"a": "1\u00b2", "b": "12", "c": "true", "d": "", "e": "~", "f": "line\nnext\n", "g": "0o17", "h": 1e17})
def test_dump_writes_what_pyyaml_writes_and_loads_back(data):
    text = dump_yaml(data)
    assert text == pyyaml_dump(data)
    assert typed(yaml.load(text, Loader=REFERENCE_LOADER)) == typed(data)


@given(dump_trees, dump_trees)
@example(datetime.date(2020, 1, 1), 1.5)  # an aliased date, then a float: the float is no alias
def test_dump_writes_shared_subtrees_as_pyyaml_does(shared, other):
    data = {"a": shared, "b": [shared, other], "c": {"d": shared}}
    assert dump_yaml(data) == pyyaml_dump(data)


needs_libyaml = pytest.mark.skipif(not hasattr(yaml, "CSafeDumper"), reason="the hand-written path mirrors libyaml")


@needs_libyaml
@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(block_text, block_trees, min_size=1, max_size=5))
def test_block_writer_writes_what_libyaml_writes(data):
    """The hand-written path, where it writes at all, writes libyaml's bytes."""
    written = _BlockWriter().write(data)
    if written is not None:
        assert written == pyyaml_dump(data)


@pytest.mark.parametrize(
    ("data", "by_hand"),
    [
        ({"a": "", "b": " a", "c": "a ", "d": "a: b", "e": "a:", "f": "a #b", "g": "- a", "h": "-a", "i": "'q'"}, True),
        ({"a": "---x", "b": "...", "c": "?", "d": "? a", "e": "a?b", "f": "#a", "g": "a#b", "h": "{a}"}, True),
        ({"a": "12", "b": "true", "c": "~", "d": "1:20", "e": "<<", "f": "=", "g": "1\u00b2", "h": 1e17}, True),
        ({"a": "x" * 75 + " y"}, True),  # ends at column 80: libyaml does not fold
        ({"a": "x" * 76 + " y"}, False),  # would be folded: libyaml writes it
        ({"k" * 128: 1, "\u00e9" * 64: 2}, True),  # 128 bytes: still a simple key
        ({"k" * 129: 1}, False),  # `? key`
        ({"\u00e9" * 65: 1}, False),  # 130 bytes in UTF-8
        ({"a": "line\nnext"}, False),  # double quotes or a literal block: libyaml
        ({"a": "tab\there"}, False),
        ({"a": datetime.date(2020, 1, 1)}, False),
        ({}, False),
    ],
)
@needs_libyaml
def test_dump_boundaries_of_the_hand_written_path(data, by_hand):
    assert (_BlockWriter().write(data) is not None) is by_hand
    assert dump_yaml(data) == pyyaml_dump(data)


@settings(max_examples=300, deadline=None)
@given(dump_trees)
def test_libyaml_path_writes_what_pyyaml_writes(data):
    """The general path (dates, anchors, double quotes) on its own."""
    assert _libyaml_dump(data) == pyyaml_dump(data)
