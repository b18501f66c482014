"""Every bad input: exit code 2, one clear line naming the file:line or the key, no traceback,
and nothing written on disk — launched for real, not in --dry-run."""

from __future__ import annotations

import pytest
from conftest import RUN_SECTION, files_under, write

RUN = RUN_SECTION
BASE = {"base.yml": RUN + "training: {lr: 0.1, epochs: 10}\nlayers: [{width: 1}]\nflag: false\n"}

# (id, files, argv, env, expected fragments of the message)
CASES = [
    ("missing-config", {}, ["nope.yml"], {}, ["nope.yml", "no such config file"]),
    ("no-args", {}, [], {}, ["missing CONFIG"]),
    ("only-flags", {}, ["--debug"], {}, ["missing CONFIG"]),
    ("empty-file", {"c.yml": ""}, ["c.yml"], {}, ["c.yml", "empty"]),
    ("top-level-list", {"c.yml": "- a\n- b\n"}, ["c.yml"], {}, ["c.yml:1", "mapping"]),
    ("top-level-scalar", {"c.yml": "hello\n"}, ["c.yml"], {}, ["c.yml:1", "mapping"]),
    ("bad-yaml-indent", {"c.yml": RUN + "a:\n  b: 1\n c: 2\n"}, ["c.yml"], {}, ["c.yml:7", "invalid YAML"]),
    ("bad-yaml-bracket", {"c.yml": RUN + "a: [1, 2\n"}, ["c.yml"], {}, ["c.yml:", "invalid YAML"]),
    (
        "python-tag",
        {"c.yml": RUN + "a: !!python/object/apply:os.system [ls]\n"},
        ["c.yml"],
        {},
        ["c.yml:5", "!!python/object/apply:os.system", "not allowed"],
    ),
    ("unknown-tag", {"c.yml": RUN + "a: !custom 3\n"}, ["c.yml"], {}, ["c.yml:5", "!custom"]),
    ("dotted-key", {"c.yml": RUN + "a.b: 1\n"}, ["c.yml"], {}, ["c.yml:5", "a.b", "contains `.`"]),
    ("int-key", {"c.yml": RUN + "1: x\n"}, ["c.yml"], {}, ["c.yml:5", "not a string"]),
    ("bool-key", {"c.yml": RUN + "on: x\n"}, ["c.yml"], {}, ["c.yml:5", "booleans"]),
    ("not-utf8", {"c.yml": b"a: \xff\xfe\n"}, ["c.yml"], {}, ["c.yml", "UTF-8"]),
    ("missing-parent", {"c.yml": "__default__: nothere.yml\n"}, ["c.yml"], {}, ["c.yml:1", "nothere.yml", "not found"]),
    (
        "parent-needs-dot",
        {"sub/base.yml": RUN, "sub/c.yml": "__default__: base.yml\n"},
        ["sub/c.yml"],
        {},
        ["sub/c.yml:1", "did you mean `./base.yml`"],
    ),
    (
        "parent-extra-dot",
        {"base.yml": RUN, "sub/c.yml": "__default__: ./base.yml\n"},
        ["sub/c.yml"],
        {},
        ["sub/c.yml:1", "exists relative to the current directory"],
    ),
    ("parent-not-string", {"c.yml": "__default__: 3\n"}, ["c.yml"], {}, ["c.yml:1", "__default__"]),
    (
        "cycle",
        {"a.yml": "__default__: b.yml\n", "b.yml": "__default__: a.yml\n"},
        ["a.yml"],
        {},
        ["cyclic __default__", "a.yml -> b.yml -> a.yml"],
    ),
    ("self-cycle", {"a.yml": "__default__: ./a.yml\n"}, ["a.yml"], {}, ["a.yml -> a.yml"]),
    (
        "bad-policy",
        {**BASE, "c.yml": "__default__: base.yml\n__new_key_policy__: strict\n"},
        ["c.yml"],
        {},
        ["c.yml:2", "strict", "raise, warn, pass"],
    ),
    (
        "policy-raise",
        {**BASE, "c.yml": "__default__: base.yml\n__new_key_policy__: raise\nepochs: 3\n"},
        ["c.yml"],
        {},
        ["c.yml:3", "`epochs` is a new key"],
    ),
    ("no-run-section", {"c.yml": "a: 1\n"}, ["c.yml"], {}, ["c.yml", "no `__run__` section"]),
    (
        "no-main",
        {"c.yml": "__run__: {__name__: x, __output_dir__: o}\n"},
        ["c.yml"],
        {},
        ["`__run__.__main__` (or `__run__.__command__`) is required"],
    ),
    (
        "no-name",
        {"c.yml": "__run__: {__main__: 'pkg.main:main', __output_dir__: o}\n"},
        ["c.yml"],
        {},
        ["`__run__.__name__` is required"],
    ),
    (
        "no-output-dir",
        {"c.yml": "__run__: {__main__: 'pkg.main:main', __name__: x}\n"},
        ["c.yml"],
        {},
        ["`__run__.__output_dir__` is required"],
    ),
    (
        "main-without-colon",
        {"c.yml": RUN.replace("pkg.main:main", "pkg.main")},
        ["c.yml"],
        {},
        ["c.yml:2", "package.module:function"],
    ),
    ("name-absolute", {"c.yml": RUN.replace("demo", "/etc/x")}, ["c.yml"], {}, ["c.yml:3", "inside"]),
    ("name-dotdot", {"c.yml": RUN.replace("demo", "a/../../x")}, ["c.yml"], {}, ["c.yml:3", "`..`"]),
    ("name-not-string", {"c.yml": RUN.replace("demo", "[1, 2]")}, ["c.yml"], {}, ["c.yml:3", "string"]),
    ("unknown-module", {"c.yml": RUN.replace("pkg.main", "pkg.nope")}, ["c.yml"], {}, ["`pkg.nope` not found"]),
    ("unknown-function", {"c.yml": RUN.replace("main:main", "main:run")}, ["c.yml"], {}, ["`run` is not defined"]),
    ("code-missing", {"c.yml": RUN + "  __code__: nowhere\n"}, ["c.yml"], {}, ["__code__", "does not exist"]),
    ("max-file-mb", {"c.yml": RUN + "  __max_file_mb__: -1\n"}, ["c.yml"], {}, ["c.yml:5", "positive"]),
    ("secrets-not-list", {"c.yml": RUN + "  __secrets__: 3\n"}, ["c.yml"], {}, ["c.yml:5", "glob patterns"]),
    (
        "env-unset",
        {"c.yml": RUN + "data: {root: $DATA_ROOT_X}\n"},
        ["c.yml"],
        {},
        ["c.yml:5", "data.root", "$DATA_ROOT_X", "is not set", "${DATA_ROOT_X:-value}"],
    ),
    ("env-unset-braced", {"c.yml": RUN + "a: 'x/${NOPE_Y}/y'\n"}, ["c.yml"], {}, ["c.yml:5", "$NOPE_Y"]),
    (
        "ref-cycle",
        {"c.yml": RUN + "a: '{b}'\nb: 'x{c}'\nc: '{a}'\n"},
        ["c.yml"],
        {},
        ["cyclic reference", "a -> b -> c -> a"],
    ),
    ("ref-self", {"c.yml": RUN + "a: '{a}'\n"}, ["c.yml"], {}, ["cyclic reference", "a -> a"]),
    ("ref-into-own-subtree", {"c.yml": RUN + "m: {x: '{m}'}\n"}, ["c.yml"], {}, ["cyclic reference"]),
    (
        "unknown-override",
        BASE,
        ["base.yml", "--training.lrr", "1"],
        {},
        ["--training.lrr", "unknown key", "did you mean `training.lr`"],
    ),
    ("unknown-override-no-close", BASE, ["base.yml", "--zzzzzz", "1"], {}, ["--+zzzzzz"]),
    (
        "override-bad-int",
        BASE,
        ["base.yml", "--training.epochs", "ten"],
        {},
        ["--training.epochs: expected int, got 'ten'"],
    ),
    ("override-bad-float", BASE, ["base.yml", "--training.lr=fast"], {}, ["expected float"]),
    ("override-bad-bool", BASE, ["base.yml", "--flag", "maybe"], {}, ["expected bool", "true/false"]),
    ("override-bad-list-item", BASE, ["base.yml", "--layers", "a,b"], {}, ["--layers", "expected a mapping"]),
    ("override-bad-mapping", BASE, ["base.yml", "--training", "3"], {}, ["--training", "expected a mapping"]),
    ("override-bad-yaml", BASE, ["base.yml", "--layers", "[1, 2"], {}, ["--layers", "not a valid YAML"]),
    ("override-index-out-of-range", BASE, ["base.yml", "--layers.5.width", "3"], {}, ["unknown key"]),
    ("override-missing-value", BASE, ["base.yml", "--training.lr"], {}, ["--training.lr: missing value"]),
    ("override-not-a-flag", BASE, ["base.yml", "stray"], {}, ["unexpected argument `stray`"]),
    ("override-empty-key", BASE, ["base.yml", "--a..b", "1"], {}, ["not a dotted key"]),
    ("new-key-under-scalar", BASE, ["base.yml", "--+flag.x", "1"], {}, ["`flag` is not a mapping"]),
    ("subcommand-missing", {}, ["nope-command"], {}, ["nope-command", "no such config file"]),
    (
        "output-dir-is-a-file",
        {"c.yml": RUN.replace("outputs", "c.yml")},
        ["c.yml"],
        {},
        ["`__run__.__output_dir__`: cannot create a run folder", "Not a directory"],
    ),
]


@pytest.mark.parametrize(
    ("files", "argv", "env", "fragments"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_exits_2_with_one_clear_line(project, expyrun, files, argv, env, fragments):
    for name, content in files.items():
        if isinstance(content, bytes):
            (project / name).write_bytes(content)
        else:
            write(project / name, content)
    before = files_under(project)
    result = expyrun(*argv, env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("expyrun: error:")]
    others = [line for line in result.stderr.splitlines() if not line.startswith("expyrun: warning:")]
    assert len(errors) == 1 and others == errors, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    created = {p for p in files_under(project) - before if "__pycache__" not in p}
    assert created == set()


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
