"""Values as users write them: environment fallbacks, overrides, sweep values, search spaces.

Every test runs the real `expyrun` and checks what a user sees: the resolved config `--dry-run`
prints, the values a run or a trial received, exit codes and one-line messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import RUN_SECTION, files_under, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def dry_run(expyrun, *args, env=None):
    result = expyrun(*args, "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def refused(expyrun, project: Path, *args, env=None) -> str:
    """The one line expyrun printed refusing the command (exit 2, nothing created, no traceback)."""
    before = files_under(project)
    result = expyrun(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expyrun: error:"), result.stderr
    assert not {p for p in files_under(project) - before if "__pycache__" not in p}
    return lines[0]


# --- ${VAR:-fallback} ---------------------------------------------------------------------------


def test_a_fallback_holding_a_self_reference_ends_at_its_balanced_brace(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "root: /r\na: ${UNSET_X:-{root}/sub}\nb: ${SET_X:-{root}}\n")
    config = dry_run(expyrun, "c.yml", env={"SET_X": "plain"})
    assert config["a"] == "/r/sub"
    assert config["b"] == "plain"


def test_an_environment_reference_inside_a_fallback_is_substituted(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION + "data: ${DATA_DIR_X:-$EXPYRUN_CWD/data}\nnested: ${UNSET_X:-${UNSET_Y:-${SET_X}}}-end\n",
    )
    config = dry_run(expyrun, "c.yml", env={"SET_X": "plain"})
    assert config["data"] == f"{project}/data"
    assert config["nested"] == "plain-end"
    config = dry_run(expyrun, "c.yml", env={"SET_X": "plain", "DATA_DIR_X": "/d"})
    assert config["data"] == "/d"


def test_a_fallback_that_is_one_reference_keeps_the_referenced_type(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "batch: 32\neval_batch: ${EVAL_BATCH_X:-{batch}}\nn: ${N_X:-5}\n")
    config = dry_run(expyrun, "c.yml")
    assert config["eval_batch"] == 32 and config["n"] == 5
    assert dry_run(expyrun, "c.yml", env={"EVAL_BATCH_X": "64"})["eval_batch"] == 64


def test_a_fallback_is_used_for_an_empty_variable_and_the_dash_form_only_for_an_unset_one(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "a: ${EMPTY_X:-fb}\nb: ${EMPTY_X-fb}\nn: ${EMPTY_X:-4}\n")
    config = dry_run(expyrun, "c.yml", env={"EMPTY_X": ""})
    assert config["a"] == "fb" and config["b"] == "" and config["n"] == 4
    config = dry_run(expyrun, "c.yml")
    assert config["a"] == "fb" and config["b"] == "fb"
    config = dry_run(expyrun, "c.yml", env={"EMPTY_X": "7"})
    assert config["a"] == 7 and config["b"] == 7


def test_an_unclosed_dash_fallback_is_refused_like_the_colon_dash_one(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "root: /r\na: ${UNSET_X-{root}\n")
    line = refused(expyrun, project, "c.yml")
    assert "c.yml:6" in line and "`a`" in line and "${UNSET_X-" in line and "no closing" in line


def test_text_from_the_environment_inside_a_fallback_is_never_read_as_a_reference(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "root: /r\na: ${UNSET_X:-$BRACES_X/{root}}\n")
    config = dry_run(expyrun, "c.yml", env={"BRACES_X": "{root}"})
    assert config["a"] == "{root}//r"


def test_an_unclosed_fallback_is_refused_naming_file_line_and_key(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "root: /r\na: ${UNSET_X:-{root}\n")
    line = refused(expyrun, project, "c.yml")
    assert "c.yml:6" in line and "`a`" in line and "${UNSET_X:-" in line and "no closing" in line


def test_explain_names_every_variable_a_fallback_read(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "data: ${DATA_DIR_X:-$EXPYRUN_CWD/data}\n")
    result = expyrun("c.yml", "--explain")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stderr.splitlines() if line.startswith("data "))
    assert f'"{project}/data"' in row and "env $DATA_DIR_X, $EXPYRUN_CWD (c.yml:5)" in row


def test_a_secret_read_inside_a_fallback_stays_a_reference_in_the_printed_config(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "token: ${UNSET_X:-$HF_TOKEN}\n")
    result = expyrun("c.yml", "--dry-run", env={"HF_TOKEN": "hf_abcdefgh"})
    assert result.returncode == 0, result.stderr
    assert "hf_abcdefgh" not in result.stdout + result.stderr


fallback_words = st.text(alphabet="abc/_-. ", max_size=6)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(fallback_words, st.just("{root}"), st.just("${SET_X}")), max_size=4).map("".join))
def test_a_fallback_resolves_as_the_same_text_written_as_a_value(project, expyrun, text):
    write(project / "c.yml", RUN_SECTION + f"root: /r\nplain: '{text}'\nfallback: '${{UNSET_X:-{text}}}'\n")
    config = dry_run(expyrun, "c.yml", env={"SET_X": "s"})
    assert config["fallback"] == config["plain"]


# --- Command-line overrides ---------------------------------------------------------------------


def test_an_int_value_takes_a_float_override_and_a_float_never_becomes_an_int(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "weight_decay: 0\nepochs: 10\nlr: 0.1\n")
    config = dry_run(expyrun, "c.yml", "--weight_decay", "1e-4", "--epochs", "12", "--lr", "3")
    assert config["weight_decay"] == 0.0001
    assert config["epochs"] == 12 and isinstance(config["epochs"], int)
    assert config["lr"] == 3.0 and isinstance(config["lr"], float)
    assert "expected int, got 'ten'" in refused(expyrun, project, "c.yml", "--epochs", "ten")


def test_an_override_of_a_whole_reference_takes_the_referenced_type(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION + "batch: 32\neval_batch: '{batch}'\nchain: '{eval_batch}'\nname: '{missing}'\n",
    )
    config = dry_run(expyrun, "c.yml", "--eval_batch", "64", "--chain", "7", "--name", "8")
    assert config["eval_batch"] == 64 and config["chain"] == 7
    assert config["name"] == "8"  # a reference to no key is text
    assert "--eval_batch: expected int, got 'big'" in refused(expyrun, project, "c.yml", "--eval_batch", "big")


def test_an_override_of_a_value_made_of_environment_references_is_read_as_environment_text(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "workers: ${N_WORKERS_X:-4}\ncopy: '{workers}'\nflag: $FLAG_X\n")
    assert dry_run(expyrun, "c.yml", env={"FLAG_X": "true"})["workers"] == 4
    config = dry_run(expyrun, "c.yml", "--workers", "8", "--copy", "0.5", "--flag", "false", env={"FLAG_X": "true"})
    assert config["workers"] == 8 and config["copy"] == 0.5 and config["flag"] is False
    assert dry_run(expyrun, "c.yml", "--workers", "all", env={"FLAG_X": "1"})["workers"] == "all"


# --- Sweep values ---------------------------------------------------------------------------------

SWEPT = RUN_SECTION + "model: {depth: 2, name: a}\nlr: 0.1\nflag: false\nbatch: 32\neval_batch: '{batch}'\n"


def test_a_sweep_value_that_does_not_convert_is_refused_as_the_override_would_be(project, expyrun):
    write(project / "c.yml", SWEPT + "__sweep__:\n  grid:\n    model.depth: [2, ten]\n")
    line = refused(expyrun, project, "c.yml")
    assert "`__sweep__.grid.model.depth`" in line and "expected int, got 'ten'" in line
    assert "expected int, got 'ten'" in refused(expyrun, project, "c.yml", "--model.depth", "ten")
    write(project / "c.yml", SWEPT + "__sweep__:\n  variants:\n    big: {flag: maybe}\n")
    line = refused(expyrun, project, "c.yml")
    assert "`__sweep__.variants.big.flag`" in line and "expected bool, got 'maybe'" in line
    write(project / "c.yml", SWEPT + "__sweep__:\n  zip:\n    model.depth: [[1, 2]]\n")
    assert "expected int, got [1, 2]" in refused(expyrun, project, "c.yml", "--dry-run")


def test_sweep_values_are_converted_to_the_type_they_replace(project, expyrun):
    write(
        project / "c.yml",
        SWEPT + "__sweep__:\n  grid:\n    lr: [1]\n    model.name: [7]\n    flag: [yes]\n    eval_batch: ['64']\n",
    )
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    record = json.loads(next((project / "outputs" / "demo").glob("exp.*/run.json")).read_text())
    config = record["result"]["config"]
    assert config["lr"] == 1.0 and isinstance(config["lr"], float)
    assert config["model"]["name"] == "7" and config["flag"] is True and config["eval_batch"] == 64


# --- Studies: null settings, search-space types, samplers of one's own -------------------------

STUDY_MAIN = """\
def main(name, config):
    if config["named"]:
        return {"loss": config["x"] ** 2, "acc": config["x"]}
    return config["x"] + config["y"] + config["z"]
"""
STUDY = RUN_SECTION.replace("demo", "study") + "x: 0.0\ny: 0.5\nz: 0.0\nnamed: false\n"
SPACE = "  search_space:\n    x: {type: float, low: -1, high: 1}\n"


def study_summary(project: Path, name: str = "study") -> dict:
    return json.loads(next((project / "outputs" / name).glob("exp.*/study.json")).read_text())


def test_a_child_config_unsets_an_inherited_direction_with_null_and_names_objectives(project, expyrun):
    write(project / "pkg" / "main.py", STUDY_MAIN)
    write(project / "base.yml", STUDY + "__optuna__:\n  n_trials: 2\n  direction: maximize\n" + SPACE)
    write(
        project / "child.yml",
        "__default__: base.yml\nnamed: true\n"
        "__optuna__:\n  direction: null\n  objectives: {loss: minimize, acc: maximize}\n",
    )
    result = expyrun("child.yml")
    assert result.returncode == 0, result.stderr
    assert study_summary(project)["directions"] == ["minimize", "maximize"]


def test_a_child_config_unsets_an_inherited_parameter_grid_key_or_variant_with_null(project, expyrun):
    write(project / "pkg" / "main.py", STUDY_MAIN)
    both = SPACE + "    y: {type: float, low: 0, high: 1}\n"
    write(project / "base.yml", STUDY + "__optuna__:\n  n_trials: 2\n" + both)
    write(project / "child.yml", "__default__: base.yml\n__optuna__:\n  search_space:\n    y: null\n")
    result = expyrun("child.yml")
    assert result.returncode == 0, result.stderr
    assert set(study_summary(project)["best"]["params"]) == {"x"}
    write(
        project / "grid.yml",
        STUDY + "__sweep__:\n  grid: {x: [0.1, 0.2], z: [1.0, 2.0]}\n  variants: {a: {y: 0.1}, b: {y: 0.2}}\n",
    )
    write(project / "less.yml", "__default__: grid.yml\n__sweep__:\n  grid: {z: null}\n  variants: {b: null}\n")
    result = expyrun("less.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    points = yaml.safe_load(result.stdout)["points"]
    assert [(p["variant"], p["values"]) for p in points] == [("a", {"y": 0.1, "x": 0.1}), ("a", {"y": 0.1, "x": 0.2})]


def test_a_null_setting_on_the_command_line_is_not_given(project, expyrun):
    write(project / "pkg" / "main.py", STUDY_MAIN)
    write(project / "c.yml", STUDY + "__optuna__:\n  n_trials: 2\n  direction: maximize\n" + SPACE)
    result = expyrun("c.yml", "--__optuna__.direction", "null")
    assert result.returncode == 0, result.stderr
    assert study_summary(project)["directions"] == ["minimize"]


def test_stexus_search_space_types_and_a_sampler_class_of_ones_own_run_a_study(project, expyrun):
    write(project / "pkg" / "main.py", STUDY_MAIN)
    write(
        project / "pkg" / "samplers.py",
        """\
        import optuna


        class LowSampler(optuna.samplers.BaseSampler):
            '''Proposes each parameter's low bound plus `offset`: what a run received shows it was used.'''

            def __init__(self, offset=0.0):
                self.offset = offset

            def infer_relative_search_space(self, study, trial):
                return {}

            def sample_relative(self, study, trial, search_space):
                return {}

            def sample_independent(self, study, trial, name, distribution):
                return distribution.low + self.offset
        """,
    )
    write(
        project / "c.yml",
        STUDY + "__optuna__:\n  n_trials: 2\n  sampler: {name: 'pkg.samplers:LowSampler', offset: 0.5}\n"
        "  search_space:\n    x: {type: uniform, low: 1, high: 2}\n"
        "    y: {type: loguniform, low: 1.0e-3, high: 1}\n"
        "    z: {type: discrete_uniform, low: 0, high: 1, q: 0.25}\n",
    )
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    assert study_summary(project)["best"]["params"] == {"x": 1.5, "y": 0.501, "z": 0.5}
    import optuna

    journal = optuna.storages.journal.JournalFileBackend(str(project / "outputs" / "study" / "study.journal"))
    trial = optuna.load_study(study_name="study", storage=optuna.storages.JournalStorage(journal)).trials[0]
    assert trial.distributions == {
        "x": optuna.distributions.FloatDistribution(1, 2),
        "y": optuna.distributions.FloatDistribution(1e-3, 1, log=True),
        "z": optuna.distributions.FloatDistribution(0, 1, step=0.25),
    }


def test_a_stexus_definition_that_does_not_fit_is_refused_before_anything(project, expyrun):
    for definition, fragment in (
        ("{type: discrete_uniform, low: 0, high: 1}", "search_space.x`: a discrete_uniform parameter needs"),
        ("{type: uniform, low: 0, high: 1, q: 0.5}", "`__optuna__.search_space.x.q`: `q` is the step of a discrete"),
        ("{type: loguniform, low: 0, high: 1}", "`__optuna__.search_space.x`: a log scale needs low > 0"),
        ("{type: uniform, low: 0, hihg: 1}", "unknown field 'hihg' (did you mean `high`?)"),
    ):
        write(project / "c.yml", STUDY + f"__optuna__:\n  search_space:\n    x: {definition}\n")
        assert fragment in refused(expyrun, project, "c.yml")


def test_a_sampler_class_that_does_not_exist_is_refused_before_anything(project, expyrun):
    write(project / "pkg" / "samplers.py", "class LowSampler:\n    pass\n")
    for name, fragment in (
        ("pkg.samplers:HighSampler", "`HighSampler` is not defined in"),
        ("pkg.nowhere:LowSampler", "module `pkg.nowhere` not found in"),
        ("pkg.samplers:", "is not package.module:Class"),
    ):
        write(project / "c.yml", STUDY + f"__optuna__:\n  sampler: {{name: '{name}'}}\n" + SPACE)
        line = refused(expyrun, project, "c.yml", "--dry-run")
        assert "`__optuna__.sampler.name`" in line and fragment in line


def test_a_keyword_the_sampler_class_of_ones_own_does_not_take_is_refused_before_anything(project, expyrun):
    write(
        project / "pkg" / "samplers.py",
        "import optuna\n\n\nclass Annealing(optuna.samplers.BaseSampler):\n"
        "    def __init__(self, temperature=100, *, seed=None):\n        pass\n",
    )
    write(
        project / "c.yml", STUDY + "__optuna__:\n  sampler: {name: 'pkg.samplers:Annealing', temprature: 5}\n" + SPACE
    )
    line = refused(expyrun, project, "c.yml", "--dry-run")
    assert line.endswith(
        "`__optuna__.sampler.temprature`: Annealing takes no argument 'temprature' (did you mean `temperature`?)"
    )
    write(project / "c.yml", STUDY + "__optuna__:\n  sampler: {name: 'pkg.samplers:Annealing', seed: 5}\n" + SPACE)
    assert expyrun("c.yml", "--dry-run").returncode == 0


def test_misspelt_types_and_directions_get_one_line_with_did_you_mean(project, expyrun):
    write(project / "c.yml", STUDY + "__optuna__:\n  search_space:\n    x: {type: flaot, low: 0, high: 1}\n")
    line = refused(expyrun, project, "c.yml")
    assert line.endswith("`__optuna__.search_space.x.type`: unknown type 'flaot' (did you mean `float`?)")
    write(project / "c.yml", STUDY + "__optuna__:\n  direction: minimise\n" + SPACE)
    line = refused(expyrun, project, "c.yml")
    assert line.endswith(
        "`__optuna__.direction`: expected minimize or maximize, got 'minimise' (did you mean `minimize`?)"
    )
    write(project / "c.yml", STUDY + "__optuna__:\n  directions: [minimize, maximise]\n" + SPACE)
    assert "`__optuna__.directions.1`: expected minimize or maximize, got 'maximise' (did you mean `maximize`?)" in (
        refused(expyrun, project, "c.yml")
    )


# --- Numbers YAML 1.1 reads as text -----------------------------------------------------------------


def test_a_number_yaml_reads_as_text_is_refused_with_the_fix(project, expyrun):
    write(project / "c.yml", STUDY + "__optuna__:\n  search_space:\n    x: {type: float, low: 1e-5, high: 1.0e10}\n")
    line = refused(expyrun, project, "c.yml")
    assert "`__optuna__.search_space.x.low`: `1e-5` is read by YAML as text" in line and "write 1.0e-5" in line
    write(project / "c.yml", STUDY + "__sweep__:\n  grid:\n    x: [0.5, 1.0e10]\n")
    line = refused(expyrun, project, "c.yml")
    assert "`__sweep__.grid.x`: `1.0e10` is read by YAML as text" in line and "write 1.0e+10" in line
    write(project / "c.yml", STUDY + "__sweep__:\n  grid:\n    +lr: [1E-3]\n")
    assert "write 1.0e-3" in refused(expyrun, project, "c.yml")
    write(project / "base.yml", STUDY)
    write(project / "child.yml", "__default__: base.yml\nx: 2e-4\n")
    line = refused(expyrun, project, "child.yml")
    assert "child.yml:2: `x` replaces a number with text: `2e-4` is read by YAML as text" in line
    assert "write 2.0e-4" in line


def test_numbers_yaml_reads_as_numbers_and_quoted_text_of_a_text_key_are_taken(project, expyrun):
    write(project / "c.yml", STUDY + "name: a\n__sweep__:\n  grid:\n    x: [1.0e+10, '1.0e-3']\n    name: [1e5]\n")
    result = expyrun("c.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    points = yaml.safe_load(result.stdout)["points"]
    assert [point["values"] for point in points] == [{"x": 1e10, "name": "1e5"}, {"x": 0.001, "name": "1e5"}]
    write(project / "c.yml", STUDY)
    assert dry_run(expyrun, "c.yml", "--x", "1.0e10")["x"] == 1e10  # the command line reads them as people do


exponent_numbers = st.builds(
    lambda sign, whole, dot, fraction, e, exponent_sign, exponent: (
        f"{sign}{whole}{dot}{fraction}{e}{exponent_sign}{exponent}"
    ),
    st.sampled_from(["", "-", "+"]),
    st.integers(0, 999).map(str),
    st.sampled_from(["", "."]),
    st.sampled_from(["", "5", "25"]),
    st.sampled_from(["e", "E"]),
    st.sampled_from(["", "+", "-"]),
    st.integers(0, 30).map(str),
)


@given(exponent_numbers)
def test_the_form_expyrun_asks_for_is_the_number_yaml_read_as_text(text):
    from expyrun.config.overrides import misread_number

    fix = misread_number(yaml.safe_load(f"x: {text}")["x"])
    if isinstance(yaml.safe_load(f"x: {text}")["x"], float):
        assert fix is None  # YAML read the number: nothing to say
        return
    written = fix.split("(write ")[1].split(":")[0]
    assert yaml.safe_load(f"x: {written}")["x"] == float(text)
