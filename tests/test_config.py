"""Config loading: defaults, located errors with suggestions, exit status 2, no TensorFlow."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfminima import config
from tfminima.monitor_specs import SharpnessMonitorSpec


def load_text(text, **kw):
    return config.load_text(textwrap.dedent(text), "exp.yaml", **kw)


def problems(text, **kw):
    with pytest.raises(config.ConfigError) as info:
        load_text(text, **kw)
    return info.value.problems


def test_defaults_are_filled_and_written_back():
    spec = load_text("dataset: {name: cifar10}\n")
    assert (spec.dataset.train_size, spec.dataset.val_size, spec.dataset.test_size) == (45000, 5000, 10000)
    assert spec.dataset.normalization == "per_pixel_mean_global_std"
    assert spec.dataset.augmentation == "shift_flip"
    assert spec.dataset.split_seed == 777
    again = config.load_text(config.to_yaml(spec), "round.yaml")
    assert again == spec


def test_unknown_key_names_file_line_key_and_suggestion():
    (p,) = problems("""\
        name: x
        optimizer:
          lr: 0.1
          momentun: 0.9
        """)
    assert (p.file, p.line, p.key) == ("exp.yaml", 4, "optimizer.momentun")
    assert "unknown key" in p.message and "did you mean 'momentum'" in p.message
    assert str(p).startswith("exp.yaml:4: optimizer.momentun: unknown key")


def test_all_problems_are_collected_in_line_order():
    ps = problems("""\
        epochs: ten
        dataset:
          name: mnist1d
          label_noise: 1.5
        model: {name: mlp, hiden: [3]}
        lr_schedule: {kind: stepp}
        """)
    assert [(p.line, p.key) for p in ps] == [
        (1, "epochs"), (4, "dataset.label_noise"), (5, "model.hiden"), (6, "lr_schedule.kind")
    ]
    assert "integer" in ps[0].message
    assert "less than or equal to 1" in ps[1].message
    assert "did you mean 'hidden'" in ps[2].message
    assert "did you mean 'step'" in ps[3].message


def test_model_and_schedule_options_are_checked_per_kind():
    (p,) = problems("model: {name: resnet, depth: 21}\n")
    assert p.key == "model.depth" and "21" not in p.key
    (p,) = problems("lr_schedule: {kind: step, milestones: [5], gamma: 0.5}\n")
    assert p.key == "lr_schedule.gamma" and "unknown key" in p.message


def test_bad_values_and_cross_checks():
    (p,) = problems("optimizer: {lr: -1}\n")
    assert p.key == "optimizer.lr" and "greater than 0" in p.message
    (p,) = problems("dataset: {train_size: 100}\noptimizer: {batch_size: 128}\n")
    assert (p.line, p.key) == (2, "optimizer.batch_size") and "larger than dataset.train_size" in p.message
    (p,) = problems("distribution: {strategy: mirrored, cpu_replicas: 2}\noptimizer: {batch_size: 33}\n")
    assert "not divisible by the 2 replicas" in p.message


def test_monitors_are_validated_by_name_and_options():
    ps = problems("""\
        monitors:
          - sharpnes: {every: 2}
          - sharpness: {evry: 2}
        """)
    assert [(p.line, p.key) for p in ps] == [(2, "monitors.0"), (3, "monitors.1.sharpness.evry")]
    assert "did you mean 'sharpness'" in ps[0].message and "did you mean 'every'" in ps[1].message
    spec = load_text("monitors: [memorization, {sharpness: {every: 3}}]\n")
    assert [m.name for m in spec.monitors] == ["memorization", "sharpness"]
    assert isinstance(spec.monitors[1], SharpnessMonitorSpec)
    assert spec.monitors[1].every == 3 and spec.monitors[1].k == 1


def test_yaml_syntax_error_has_line():
    (p,) = problems("name: x\noptimizer: [1, 2\nepochs: 3\n")
    assert p.line in (2, 3) and "YAML syntax error" in p.message


def test_sweep_keys_are_checked():
    (p,) = problems("""\
        sweep:
          grid:
            optimizer.lrr: [0.1, 0.2]
        """)
    assert (p.line, p.key) == (3, "sweep.grid.optimizer.lrr") and "did you mean 'lr'" in p.message


def test_sweep_runs_are_each_validated():
    (p,) = problems("""\
        dataset: {train_size: 100}
        sweep:
          grid:
            optimizer.batch_size: [32, 1000]
        """)
    assert (p.line, p.key) == (4, "optimizer.batch_size")
    assert "larger than dataset.train_size" in p.message and "bs1000" in p.message


def test_overrides():
    spec = load_text("optimizer: {lr: 0.1}\n", overrides=["optimizer.lr=0.5", "epochs=3"])
    assert spec.optimizer.lr == 0.5 and spec.epochs == 3
    (p,) = problems("name: x\n", overrides=["optimizer.lrr=3"])
    assert p.file == "--set" and p.line is None and "did you mean 'lr'" in p.message


def test_conversion_needs_the_other_schedule_constant():
    (p,) = problems("""\
        schedule_conversion: lr_to_batch_size
        batch_size_schedule: {kind: exponential, gamma: 1.1}
        """)
    assert "constant batch_size_schedule" in p.message


def test_cli_validate_exit_status_and_no_traceback(tmp_path, cli_here):
    """In this process (cli_here): an exception would fail the test as a traceback would show."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\noptimizer:\n  momentun: 0.9\n")
    good = tmp_path / "good.yaml"
    good.write_text("name: x\nsweep: {ratio: [0.001, 0.002], grid: {optimizer.batch_size: [32, 64]}}\n")
    r = cli_here("validate", bad)
    assert r.returncode == 2
    assert f"{bad}:3: optimizer.momentun: unknown key (did you mean 'momentum'?)" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    r = cli_here("validate", "--list", good)
    assert r.returncode == 0, r.stderr
    assert "ok (4 runs)" in r.stdout and "lr0.064-bs64-s0" in r.stdout


def test_cli_run_bad_config_exits_2_before_training(tmp_path, cli_here):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\ndataset: {nme: mnist1d}\n")
    r = cli_here("run", bad)
    assert r.returncode == 2
    assert "dataset.nme: unknown key (did you mean 'name'?)" in r.stderr
    assert "Traceback" not in r.stderr


def test_light_modules_do_not_import_tensorflow():
    code = (
        "import sys; import tfminima.config, tfminima.sweep, tfminima.rundir, tfminima.schedules, "
        "tfminima.config_schema, tfminima.config_yaml, tfminima.limits, tfminima.paths, tfminima.safe_io, "
        "tfminima.runfiles, tfminima.cluster, tfminima.resume; "
        "bad = [m for m in ('tensorflow', 'keras', 'textual') if m in sys.modules]; print(bad)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_profiles_apply_dotted_overrides_and_report_their_lines(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""\
        name: full
        dataset: {name: cifar10}
        model: {name: resnet, depth: 56}
        profiles:
          cpu:
            dataset: {name: mnist1d, train_size: 2000}
            model: {name: mlp, hidden: [64]}
            optimizer.lr: 0.05
          broken:
            optimizer.lrr: 0.05
        """))
    full = config.load(path)
    assert full.model.name == "resnet" and full.profile == ""
    cpu = config.load(path, profile="cpu")
    assert (cpu.dataset.name, cpu.dataset.train_size, cpu.model.name, cpu.optimizer.lr) == ("mnist1d", 2000, "mlp", 0.05)
    assert cpu.profile == "cpu" and cpu.profiles == {}
    assert "profiles" not in config.to_yaml(cpu) and "profile: cpu" in config.to_yaml(cpu)
    with pytest.raises(config.ConfigError) as info:
        config.load(path, profile="broken")
    (p,) = info.value.problems
    assert (p.line, p.key) == (10, "optimizer.lrr") and "did you mean 'lr'" in p.message
    with pytest.raises(config.ConfigError, match="no profile 'cpux'.*did you mean 'cpu'"):
        config.load(path, profile="cpux")
    r = subprocess.run([sys.executable, "-m", "tfminima.cli", "validate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "(profile cpu): ok" in r.stdout and "optimizer.lrr" in r.stderr


def test_sections_without_their_tag_report_plain_keys():
    ps = problems("model:\n  hidden: [0]\nlr_schedule:\n  milestones: [3]\n")
    assert [(p.line, p.key) for p in ps] == [(2, "model.hidden.0"), (4, "lr_schedule.milestones")]


def test_config_keeps_the_names_its_users_call_after_the_split():
    """config.py was split into config_schema and config_yaml: every name read through ``tfminima.config``
    anywhere in the repository still resolves there."""
    import re

    root = Path(__file__).resolve().parents[1]
    used = set()
    for path in [*root.glob("tfminima/**/*.py"), *root.glob("tui/**/*.py"), *root.glob("tests/*.py"),
                 *root.glob("benchmarks/*.py"), *root.glob("scripts/*.py")]:
        text = path.read_text()
        used |= set(re.findall(r"\bconfig(?:_lib)?\.([A-Z_a-z]\w*)", text))
        for names in re.findall(r"from tfminima\.config import ([\w, ]+)", text):
            used |= {n.strip() for n in names.split(",")}
    file_names = {"yaml", "py"}  # "config.yaml", "config.py" in text
    tf_and_keras = {n for n in used if n.startswith(("set_", "list_", "get_logical"))} | {
        "experimental", "floatx", "dtype_policy", "LogicalDeviceConfiguration", "optimizer"}  # tf.config, keras.config
    pytests = {"option"}  # pytest's config, in conftest's hooks
    not_ours = file_names | tf_and_keras | pytests
    missing = sorted(n for n in used - not_ours if not hasattr(config, n))
    assert missing == []


@pytest.mark.parametrize("value, why", [("1" * 5000, "an integer of more than 4300 digits"),
                                        ("2024-13-01", "month must be in 1..12"),
                                        ("2023-02-29", "day is out of range for month")])
def test_yaml_values_that_cannot_be_built_name_their_line(tmp_path, value, why):
    """YAML reads these as an integer or a date that Python cannot build: a ConfigError at the value's line."""
    path = tmp_path / "v.yaml"
    path.write_text(f"name: v\nmodel:\n  hidden: [8, {value}]\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    shown = value if len(value) <= 40 else value[:37] + "..."
    assert str(err.value) == f"{path}:3: YAML value {shown!r} ({why}) cannot be read"
    assert config.parse_override(f"description={value}") == ("description", value)  # --set: kept as text


@pytest.mark.parametrize("item, key, words", [
    ("sweep.grid.optimizer.lr=[" + ",".join(["0.1"] * 100_001) + "]", "sweep.grid.optimizer.lr",
     "the value expands to more than 100000 values"),
    ("seed=&a [*a]", "seed", "refers to a node that contains it"),
    ("a" + ".b" * 200 + "=1", "a.b.b.b", "the key is nested too deeply"),
])
def test_an_oversized_set_value_is_named_as_the_set_not_as_the_file(item, key, words):
    """It was reported as the config file's problem ("tiny.yaml: the document expands ..."), once merged."""
    with pytest.raises(config.ConfigError) as err:
        config.load_text("epochs: 1\n", "f.yaml", [item])
    (problem,) = err.value.problems
    assert problem.file == "--set" and problem.key.startswith(key) and words in problem.message, problem
