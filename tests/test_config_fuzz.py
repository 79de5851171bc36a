"""Config fuzzing: whatever a YAML file or ``--set`` holds, the answer is a valid spec or a ConfigError.

Random documents, random text, wrong types, unknown and misspelled keys and out-of-range values,
applied to a valid experiment; ``tfminima validate`` and ``run`` must exit 2 on all of them with
the problem printed and no traceback. Deterministic in the default suite; for a longer random
search:  FUZZ_EXAMPLES=5000 python -m pytest tests/test_config_fuzz.py
"""

import io
import os
import typing
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tfminima import cli, config, sweep

# Text of any Unicode character but a lone surrogate: the alphabet of st.text()'s default (its codec
# utf-8), given without naming the codec, for which Hypothesis would first encode every code point
# (~2.5 CPU-s in each fresh checkout's test process).
UNICODE = st.characters(exclude_categories=("Cs",))

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    derandomize=not EXAMPLES,  # the default suite sees the same examples every time
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# The commands' answer to a broken file is one path (the ConfigError printed, exit 2), whatever broke it;
# the errors themselves are fuzzed with FUZZ's examples by the tests of config.load_text.
CLI_FUZZ = settings(FUZZ, max_examples=EXAMPLES or 50)

BASE = {
    "name": "fuzz",
    "epochs": 3,
    "dataset": {"name": "mnist1d", "train_size": 512, "val_size": 64, "test_size": 64, "label_noise": 0.2},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"lr": 0.05, "batch_size": 32, "momentum": 0.9},
    "lr_schedule": {"kind": "step", "milestones": [1], "factor": 0.5},
    "monitors": [{"sharpness": {"every": 2, "samples": 128}}, "memorization"],
    "sweep": {"grid": {"optimizer.batch_size": [32, 64]}, "seeds": [0, 1]},
}


def _members(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Annotated, Union, Optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _members(a)]


def schema_keys(model=config.ExperimentSpec, prefix="") -> list[str]:
    """Every dotted key of the schema (all members of tagged unions)."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        for member in _members(field.annotation):
            keys += schema_keys(member, f"{prefix}{name}.")
    return sorted(set(keys))


KEYS = schema_keys()
NUMERIC = [k for k in KEYS if k.split(".")[-1] in {
    "lr", "batch_size", "momentum", "weight_decay", "epochs", "train_size", "val_size", "test_size",
    "label_noise", "dropout", "eval_batch_size", "divergence_factor", "checkpoint_every", "svag", "factor",
    "gamma", "period", "stage", "cpu_replicas", "interpolation_points"}]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(UNICODE, max_size=12),
    st.sampled_from(["mlp", "cnn", "resnet", "sgd", "step", "table", "auto", "mirrored", "mnist1d", "cifar10"]),
)
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(UNICODE, max_size=10), inner, max_size=4)),
    max_leaves=12,
)
out_of_range = st.one_of(  # for random numeric keys: some are out of range for that key, some are not
    st.integers(-(10**9), 0), st.floats(-1e9, 0.0), st.floats(1.0001, 1e12), st.integers(10**6, 10**15),
    st.just(float("inf")), st.just(float("nan")),
)


def misspell(draw, key: str) -> str:
    parts = key.split(".")
    word = parts[-1]
    i = draw(st.integers(0, len(word)))
    edit = draw(st.sampled_from(["drop", "double", "swap", "insert"]))
    if edit == "drop" and len(word) > 1:
        word = word[:i] + word[i + 1:]
    elif edit == "double" and i < len(word):
        word = word[:i] + word[i] + word[i:]
    elif edit == "swap" and i + 1 < len(word):
        word = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    else:
        word = word[:i] + draw(st.sampled_from("aeiourst_")) + word[i:]
    return ".".join(parts[:-1] + [word])


@st.composite
def mutated_documents(draw):
    """A valid experiment with 1-4 things broken (or not: some mutations stay valid)."""
    import copy

    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "misspell", "unknown", "delete", "range", "sweep", "replace_section"]))
        if kind == "set":
            config.set_dotted(data, draw(st.sampled_from(KEYS)), draw(values))
        elif kind == "misspell":
            config.set_dotted(data, misspell(draw, draw(st.sampled_from(KEYS))), draw(values))
        elif kind == "unknown":
            config.set_dotted(data, draw(st.text(UNICODE, min_size=1, max_size=8)), draw(values))
        elif kind == "delete":
            parts = draw(st.sampled_from(KEYS)).split(".")
            node = config.get_dotted(data, ".".join(parts[:-1])) if len(parts) > 1 else data
            if isinstance(node, dict):
                node.pop(parts[-1], None)
        elif kind == "range":
            config.set_dotted(data, draw(st.sampled_from(NUMERIC)), draw(out_of_range))
        elif kind == "sweep":
            axis = draw(st.sampled_from(["grid", "zip", "ratio", "seeds", "derive"]))
            key = draw(st.sampled_from(KEYS + ["label", "optimizer.lrr"]))
            value = draw(st.lists(values, max_size=3)) if axis in ("grid", "zip") else draw(values)
            if axis in ("grid", "zip"):
                data.setdefault("sweep", {}).setdefault(axis, {})[key] = value
            else:
                data.setdefault("sweep", {})[axis] = value
        else:
            data[draw(st.sampled_from(sorted(BASE)))] = draw(values)
    return yaml.safe_dump(data, sort_keys=False)


yaml_ish = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(KEYS + ["?", "-", "&a", "*a", "[", "{", "!!binary"]),
              st.one_of(st.text(UNICODE, max_size=10), st.sampled_from(["", "[1, 2", "{a: 1}", "&a [*a]", "*a", ".inf", "- x"]))),
    max_size=8,
).map(lambda lines: "".join(f"{'  ' * d}{k.split('.')[-1]}: {v}\n" for d, k, v in lines))


def outcome(text, overrides=None):
    """('ok', spec) or ('error', ConfigError); any other exception fails the test."""
    try:
        spec = config.load_text(text, "fuzz.yaml", overrides)
    except config.ConfigError as err:
        assert err.problems and all(isinstance(p.message, str) and p.message for p in err.problems)
        assert str(err).startswith("fuzz.yaml") or str(err).startswith("--set")
        return "error", err
    plans = sweep.expand(spec)  # a valid spec always expands
    assert plans and all(p.spec is not None for p in plans)
    assert config.load_text(config.to_yaml(spec), "again.yaml") == spec  # and round-trips
    return "ok", spec


@FUZZ
@given(mutated_documents())
def test_mutated_experiments_give_a_spec_or_a_config_error(text):
    outcome(text)


@FUZZ
@given(st.one_of(st.text(UNICODE, max_size=200), yaml_ish))
def test_random_text_gives_a_spec_or_a_config_error(text):
    outcome(text)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS + ["optimizer.lrr", "", "a..b", "monitors"]), values), max_size=3))
def test_random_overrides_give_a_spec_or_a_config_error(items):
    overrides = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                 for k, v in items]
    outcome(yaml.safe_dump(BASE), overrides)


non_finite = st.sampled_from([float("inf"), float("-inf"), float("nan")])
BAD = {  # key -> (values out of its range, the key the error names)
    "optimizer.lr": (st.one_of(st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0), non_finite),
                     "optimizer.lr"),
    "optimizer.batch_size": (st.one_of(st.integers(max_value=0), st.integers(513, 10**12)), "optimizer.batch_size"),
    "dataset.label_noise": (st.one_of(st.floats(max_value=-1e-12, allow_nan=False),
                                      st.floats(min_value=1.0 + 1e-12, allow_nan=False), non_finite),
                            "dataset.label_noise"),
    "dataset.train_size": (st.integers(max_value=0), "dataset.train_size"),
    "epochs": (st.integers(max_value=0), "epochs"),
    "optimizer.momentum": (st.one_of(st.floats(max_value=-1e-12, allow_nan=False), st.floats(min_value=1.0), non_finite),
                           "optimizer.momentum"),
}


@st.composite
def bad_values(draw):
    key = draw(st.sampled_from(sorted(BAD) + ["small_train_set"]))
    if key == "small_train_set":  # a training set smaller than the batch of 32
        return "dataset.train_size", draw(st.integers(1, 31)), "optimizer.batch_size"
    values_, reported = BAD[key]
    return key, draw(values_), reported


@FUZZ
@given(bad_values(), st.booleans())
def test_out_of_range_values_name_their_key(bad, in_sweep):
    import copy

    key, value, reported = bad
    data = {k: copy.deepcopy(v) for k, v in BASE.items() if k != "sweep"}
    if in_sweep:
        data["sweep"] = {"grid": {key: [value]}}
    else:
        config.set_dotted(data, key, value)
    state, err = outcome(yaml.safe_dump(data))
    assert state == "error"
    assert any(p.key == reported for p in err.problems), str(err)


@pytest.mark.parametrize("command", ["validate", "run"])
@CLI_FUZZ
@given(text=st.one_of(mutated_documents(), yaml_ish))
def test_cli_exits_2_with_the_problem_and_no_traceback(tmp_path_factory, command, text):
    state, _ = outcome(text)
    if state == "ok":
        return  # a valid config would train: only broken ones are sent to the CLI
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main([command, str(path)])
    assert code == 2
    assert str(path) in err.getvalue() and "Traceback" not in err.getvalue()


def test_files_that_are_not_yaml_text(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00name: x\n\x80")
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 300 + "]" * 300 + "\n")
    very_deep = tmp_path / "very_deep.yaml"  # libyaml's composer would overflow the C stack (a segfault)
    very_deep.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\nb:\n  " + "- " * 100_000 + "1\n")
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef")))
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("description: &x [*x]\n")
    for path, message in ((binary, "not UTF-8"), (deep, "nested too deeply"), (very_deep, "nested too deeply"),
                          (laughs, "expands to more than"), (recursive, "refers to a node that contains it"),
                          (tmp_path, "cannot read")):
        with pytest.raises(config.ConfigError, match=message):
            config.load(path)
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            assert cli.main(["validate", str(path)]) == 2
        assert message in err.getvalue() and "Traceback" not in err.getvalue()
