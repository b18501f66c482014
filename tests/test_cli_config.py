"""The config engine seen from the command line: --dry-run, --explain, overrides, env, references."""

from __future__ import annotations

import yaml
from conftest import RUN_SECTION, files_under, write


def dry_run(expyrun, *args, env=None):
    result = expyrun(*args, "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_dry_run_prints_resolved_yaml_and_creates_nothing(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nname: 'n_{lr}'\n")
    before = files_under(project)
    config = dry_run(expyrun, "c.yml")
    assert config["lr"] == 0.1
    assert config["name"] == "n_0.1"
    assert config["__run__"]["__output_dir__"] == str(project / "outputs")
    assert config["__run__"]["__code__"] == str(project)
    assert files_under(project) - before <= {p for p in files_under(project) if "__pycache__" in p}


def test_flags_are_recognised_anywhere(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "a: 1\nb: x\n")
    for args in (
        ["--dry-run", "c.yml", "--a", "2"],
        ["c.yml", "--a", "2", "--dry-run"],
        ["c.yml", "--dry-run", "--a", "2"],
    ):
        result = expyrun(*args)
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout)["a"] == 2


def test_inheritance_relative_paths_and_merge(project, expyrun):
    write(project / "configs" / "base.yml", RUN_SECTION + "model: {depth: 2, width: 8}\nlayers: [1, 2]\n")
    write(project / "configs" / "mid.yml", "__default__: ./base.yml\nmodel: {width: 16}\n")
    write(project / "configs" / "exp" / "child.yml", "__default__: [configs/mid.yml, ../base.yml]\nlayers: [3]\n")
    config = dry_run(expyrun, "configs/exp/child.yml")
    assert config["model"] == {"depth": 2, "width": 8}  # base.yml listed last wins among parents
    assert config["layers"] == [3]


def test_new_key_policy_raise_names_file_line_and_suggests(project, expyrun):
    write(project / "base.yml", RUN_SECTION + "training: {lr: 0.1}\n")
    write(project / "child.yml", "__default__: base.yml\n__new_key_policy__: raise\ntraining:\n  lrr: 0.2\n")
    result = expyrun("child.yml", "--dry-run")
    assert result.returncode == 2
    assert "child.yml:4" in result.stderr and "training.lrr" in result.stderr
    assert "`training.lr`" in result.stderr
    assert "Traceback" not in result.stderr


def test_new_key_policy_warn_adds_with_warning(project, expyrun):
    write(project / "base.yml", RUN_SECTION + "a: 1\n")
    write(project / "child.yml", "__default__: base.yml\nb: 2\n")
    result = expyrun("child.yml", "--dry-run")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout)["b"] == 2
    assert "warning" in result.stderr and "child.yml:2" in result.stderr


def test_type_change_warns_and_replaces(project, expyrun):
    write(project / "base.yml", RUN_SECTION + "opt: {name: sgd}\n")
    write(project / "child.yml", "__default__: base.yml\nopt: 3\n")
    result = expyrun("child.yml", "--dry-run")
    assert yaml.safe_load(result.stdout)["opt"] == 3
    assert "changes type" in result.stderr


def test_environment_variables_fallbacks_and_conversion(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION
        + """\
        a: $VAR_1
        b: ${VAR_0}
        c: ${UNSET_X:-7}
        d: "${UNSET_X:-fallback}/x"
        e: "$VAR_1$VAR_1"
        f: "pre_$VAR_1"
        g: ${FLAG}
        """.replace("        ", ""),
    )
    config = dry_run(expyrun, "c.yml", env={"VAR_1": "12", "VAR_0": "1.5", "FLAG": "True"})
    assert config["a"] == 12 and config["b"] == 1.5 and config["c"] == 7
    assert config["d"] == "fallback/x"
    assert config["e"] == 1212
    assert config["f"] == "pre_12"
    assert config["g"] is True


def test_self_references_keep_types_and_copy_subtrees(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION
        + """\
        layers: [{width: 64}, {width: 128}]
        first: "{layers.0.width}"
        text: "w{layers.1.width}"
        copy: "{layers}"
        model: {depth: 3, act: relu}
        model_copy: "{model}"
        ratio: "{half}"
        half: 0.5
        flag: "{enabled}"
        enabled: true
        fmt: "ckpt_{epoch}.pt"
        raw: "!P{first}"
        """.replace("        ", ""),
    )
    result = expyrun("c.yml", "--dry-run")
    config = yaml.safe_load(result.stdout)
    assert config["first"] == 64
    assert config["text"] == "w128"
    assert config["copy"] == [{"width": 64}, {"width": 128}]
    assert config["model_copy"] == {"depth": 3, "act": "relu"}
    assert config["ratio"] == 0.5 and config["flag"] is True
    assert config["fmt"] == "ckpt_{epoch}.pt"
    assert "{epoch}" in result.stderr and "kept as written" in result.stderr
    assert config["raw"] == "{first}"


def test_unquoted_no_parse_prefix_is_read_as_text(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "a: 1\nb: !P {a}\nc: !P plain {a}\n")
    config = dry_run(expyrun, "c.yml")
    assert config["b"] == "{a}" and config["c"] == "plain {a}"


def test_references_inside_lists_of_mappings_resolve(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION
        + """\
        base: 32
        blocks:
          - {width: "{base}", name: "b{base}"}
          - [x, "{blocks.0.width}"]
        """.replace("        ", ""),
    )
    config = dry_run(expyrun, "c.yml")
    assert config["blocks"] == [{"width": 32, "name": "b32"}, ["x", 32]]


def test_references_follow_overrides(project, expyrun):
    write(project / "c.yml", RUN_SECTION.replace("demo", "run_{seed}") + "seed: 1\n")
    config = dry_run(expyrun, "c.yml", "--seed", "111")
    assert config["__run__"]["__name__"] == "run_111"


def test_overrides_convert_to_the_replaced_type(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION
        + """\
        i: 1
        f: 1.0
        b: false
        s: text
        l: [1, 2, 3]
        ls: [a, b]
        m: {x: 1}
        n: null
        layers: [{width: 1}, {width: 2}]
        """.replace("        ", ""),
    )
    config = dry_run(
        expyrun,
        "c.yml",
        "--i",
        "5",
        "--f=2",
        "--b",
        "YES",
        "--s",
        "12",
        "--l",
        "4,5",
        "--ls",
        "[x, 1]",
        "--m",
        "{y: 2}",
        "--n",
        "3.5",
        "--layers.1.width",
        "256",
        "--+extra.deep",
        "[1, 2]",
        "--+flag",
        "true",
    )
    assert config["i"] == 5 and config["f"] == 2.0 and isinstance(config["f"], float)
    assert config["b"] is True and config["s"] == "12"
    assert config["l"] == [4, 5] and config["ls"] == ["x", 1]
    assert config["m"] == {"y": 2} and config["n"] == 3.5
    assert config["layers"] == [{"width": 1}, {"width": 256}]
    assert config["extra"] == {"deep": [1, 2]} and config["flag"] is True


def test_reserved_sections_can_be_overridden(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    config = dry_run(expyrun, "c.yml", "--__run__.__name__", "other")
    assert config["__run__"]["__name__"] == "other"


def test_secrets_stay_references_in_printed_config(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "api: ${HF_TOKEN}\nheader: 'Bearer {api}'\nuser: $USER_NAME\n")
    result = expyrun("c.yml", "--dry-run", env={"HF_TOKEN": "s3cr3t", "USER_NAME": "ann"})
    assert "s3cr3t" not in result.stdout + result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["api"] == "${HF_TOKEN}" and config["header"] == "Bearer {api}"
    assert config["user"] == "ann"


def test_explain_names_origins(project, expyrun):
    write(project / "base.yml", RUN_SECTION + "a: 1\nb: 2\nc: $SOME_VAR\n")
    write(project / "child.yml", "__default__: base.yml\nb: 3\n")
    result = expyrun("child.yml", "--explain", "--a", "9", env={"SOME_VAR": "x"})
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["a"] == 9  # the resolved YAML, as --dry-run
    lines = {line.split()[0]: line for line in result.stderr.splitlines() if not line.startswith("expyrun:")}
    assert lines["a"].split()[1:] == ["9", "cli"]
    assert lines["b"].endswith("child.yml:2")
    assert lines["c"].endswith("env $SOME_VAR (base.yml:7)")
    assert lines["__run__.__code__"].endswith("default")
    assert lines["__run__.__main__"].endswith("base.yml:2")


def test_first_argument_that_is_a_file_is_a_config(project, expyrun):
    write(project / "list", RUN_SECTION + "a: 1\n")
    config = dry_run(expyrun, "list")
    assert config["a"] == 1


def test_version_and_help(expyrun):
    version = expyrun("--version")
    assert version.returncode == 0 and version.stdout.startswith("expyrun ")
    help_text = expyrun("--help")
    assert help_text.returncode == 0 and "--dry-run" in help_text.stdout


def test_traceback_only_on_request(project, expyrun):
    result = expyrun("missing.yml", env={"EXPYRUN_TRACEBACK": "1"})
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_duplicate_keys_warn_and_the_last_wins(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nmodel: {a: 1}\nlr: 0.2\n")
    result = expyrun("c.yml", "--dry-run")
    assert yaml.safe_load(result.stdout)["lr"] == 0.2
    assert "c.yml:7: duplicate key `lr` (also on line 5)" in result.stderr


def test_yaml_merge_keys_are_not_duplicates(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    result = expyrun("c.yml", "--dry-run")
    assert yaml.safe_load(result.stdout)["other"] == {"x": 1, "y": 3}
    assert "duplicate" not in result.stderr


def test_digit_like_unicode_scalars_are_strings_as_in_pyyaml(project, expyrun):
    """`1²` was an internal error and `1٣` the int 13: PyYAML reads both as strings."""
    write(project / "c.yml", RUN_SECTION + "a: 1\u00b2\nb: 1\u0663\nc: 12\n")
    result = expyrun("c.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    config = yaml.load(result.stdout, Loader=yaml.SafeLoader)
    assert (config["a"], config["b"], config["c"]) == ("1\u00b2", "1\u0663", 12)
