"""Property tests of the config engine's building blocks."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from expyrun.config.inheritance import merge_into
from expyrun.config.interpolation import Interpolator
from expyrun.config.tree import flatten, unflatten
from expyrun.config.yaml_reader import YamlFile
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


FILE = YamlFile(Path("x.yml"), "x.yml", None, {})


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
