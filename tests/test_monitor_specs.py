"""One source for the monitors: their specs (tfminima.monitor_specs) hold the options and defaults, the
monitors are built from them, the YAML, the Python API and the TUI's form all read them."""

import importlib
import sys
import textwrap

import pytest
import yaml

from tfminima import config, monitors
from tfminima.monitor_specs import (
    MONITOR_SPECS,
    MemorizationMonitorSpec,
    MonitorOptionError,
    NoiseMonitorSpec,
    SharpnessMonitorSpec,
)
from tfminima.monitors import MemorizationMonitor, NoiseMonitor, SharpnessMonitor
from tui import formspec


def test_every_spec_has_its_monitor_and_every_monitor_its_spec():
    assert set(monitors.MONITORS) == set(MONITOR_SPECS)
    for name, cls in monitors.MONITORS.items():
        assert cls.spec_type is MONITOR_SPECS[name] and monitors.monitor_class(name) is cls
    with pytest.raises(KeyError, match="unknown monitor 'sharpnes'"):
        monitors.monitor_class("sharpnes")


@pytest.mark.parametrize("name", sorted(MONITOR_SPECS))
def test_a_monitor_built_without_options_carries_its_specs_defaults(name):
    defaults = MONITOR_SPECS[name]()
    monitor = monitors.monitor_class(name)()
    assert monitor.spec == defaults and monitor.kind == name
    for option, value in defaults:
        assert getattr(monitor, option) == value, option


def test_a_monitor_built_from_a_config_carries_the_config_and_the_defaults():
    spec = config.load_text("monitors: [{sharpness: {every: 2, k: 3}}, noise]\n", "m.yaml")
    sharp, noisy = monitors.build_all(spec)
    assert isinstance(sharp, SharpnessMonitor) and isinstance(noisy, NoiseMonitor)
    assert sharp.spec is spec.monitors[0] and (sharp.every, sharp.k) == (2, 3)
    assert sharp.samples == SharpnessMonitorSpec().samples and sharp.tol == SharpnessMonitorSpec().tol
    assert noisy.spec == NoiseMonitorSpec() and noisy.every == NoiseMonitorSpec().every


def test_python_api_options_are_validated_by_the_spec():
    monitor = SharpnessMonitor(every=2, k=3)
    assert monitor.spec == SharpnessMonitorSpec(every=2, k=3)
    from_spec = SharpnessMonitor(SharpnessMonitorSpec(k=4), every=3)  # options override the spec's
    assert (from_spec.k, from_spec.every) == (4, 3)
    with pytest.raises(MonitorOptionError, match=r"sharpness monitor: k: .*greater than or equal to 1 \(got 0\)"):
        SharpnessMonitor(k=0)
    with pytest.raises(ValueError, match=r"evry: unknown option \(did you mean 'every'\?\)"):
        SharpnessMonitor(evry=2)
    with pytest.raises(MonitorOptionError, match="method: .*'lanczos'.*got 'arnoldi'") as info:
        SharpnessMonitor(method="arnoldi", samples=0)
    assert "samples: " in str(info.value)  # every bad option is named
    with pytest.raises(TypeError, match="SharpnessMonitorSpec expected"):
        SharpnessMonitor(NoiseMonitorSpec())


def test_an_option_added_to_a_spec_reaches_its_monitor():
    class WiderSpec(SharpnessMonitorSpec):
        batches: int = 3

    class WiderMonitor(SharpnessMonitor):
        spec_type = WiderSpec

    assert WiderMonitor().batches == 3 and WiderMonitor(batches=5).batches == 5
    with pytest.raises(MonitorOptionError, match="batches"):
        WiderMonitor(batches="many")


def test_the_resolved_yaml_keeps_the_shape_old_runs_have_and_round_trips():
    spec = config.load_text("monitors: [{sharpness: {every: 5}}, memorization, {noise: {}}]\n", "m.yaml")
    dumped = config.to_yaml(spec)
    entries = yaml.safe_load(dumped)["monitors"]
    assert entries == [{m.name: m.model_dump(mode="json")} for m in spec.monitors]
    assert list(entries[0]) == ["sharpness"] and entries[0]["sharpness"]["k"] == SharpnessMonitorSpec().k
    assert config.load_text(dumped, "again.yaml") == spec
    # a config.yaml written before the specs were typed: only some options, or all of them
    old = textwrap.dedent("""\
        monitors:
        - sharpness: {every: 5, k: 1, trace: true, samples: 2048}
        - memorization: {}
        - noise: {every: 5, samples: 512, seed: 0, trace_probes: 30, tol: 0.001, chunk_size: null}
        """)
    assert config.load_text(old, "config.yaml") == spec


def test_noisy_labels_add_the_memorization_monitor_once():
    noisy = "dataset: {label_noise: 0.2}\n"
    spec = config.load_text(noisy + "monitors: [sharpness]\n", "m.yaml")
    assert spec.monitors_to_run() == [SharpnessMonitorSpec(), MemorizationMonitorSpec()]
    listed = config.load_text(noisy + "monitors: [{memorization: {every: 2}}]\n", "m.yaml")
    assert listed.monitors_to_run() == [MemorizationMonitorSpec(every=2)]
    assert config.load_text("monitors: [sharpness]\n", "m.yaml").monitors_to_run() == [SharpnessMonitorSpec()]
    assert [type(m) for m in monitors.build_all(spec)] == [SharpnessMonitor, MemorizationMonitor]


def test_the_tui_form_shows_each_specs_options_and_defaults():
    fields = {f.key: f for f in formspec.monitor_fields()}
    expected = {f"monitors.{name}" for name in MONITOR_SPECS}
    for name, spec in MONITOR_SPECS.items():
        expected |= {f"monitors.{name}.{option}" for option in spec.model_fields}
        for option, value in spec():
            assert fields[f"monitors.{name}.{option}"].default == value
    assert set(fields) == expected


def test_an_import_error_inside_a_monitor_module_surfaces_as_itself(monkeypatch):
    """The monitors package imported afresh in this process while what the noise monitor's module imports
    fails; the modules it had (and the package attribute) are put back afterwards, the new ones dropped."""
    import tfminima

    package = [name for name in sys.modules if name == "tfminima.monitors" or name.startswith("tfminima.monitors.")]
    for name in package:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(tfminima, "monitors", sys.modules.get("tfminima.monitors", monitors))
    monkeypatch.setitem(sys.modules, "tfminima.noise", None)
    monkeypatch.delattr(tfminima, "noise", raising=False)  # else ``from tfminima import noise`` finds it
    try:
        with pytest.raises(ImportError) as err:
            importlib.import_module("tfminima.monitors")
    finally:
        for name in [n for n in sys.modules if n.startswith("tfminima.monitors")]:
            del sys.modules[name]  # the half-imported ones; monkeypatch restores the real ones
    assert str(err.value) == "import of tfminima.noise halted; None in sys.modules"
