"""The YAML option schemas of the monitors mirror their constructors exactly."""

import inspect

import pytest

from tfminima import config, monitors


@pytest.mark.parametrize("name", sorted(config.MONITOR_SPECS))
def test_monitor_spec_matches_constructor(name):
    cls = monitors.monitor_class(name)
    sig = inspect.signature(cls.__init__)
    params = set(sig.parameters) - {"self"}
    spec = config.MONITOR_SPECS[name]
    assert set(spec.model_fields) == params
    # defaults agree too, so the resolved config.yaml says what actually ran
    for field, info in spec.model_fields.items():
        default = sig.parameters[field].default
        assert info.default == default, (name, field, info.default, default)
    # the defaults build a monitor
    cls(**spec().model_dump())
