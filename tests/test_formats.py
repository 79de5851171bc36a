"""η/S is written one way in the CLI, the TUI and the report (tfminima.formats.eta_over_s)."""

import math

import pytest

from tfminima.formats import eta_over_s


@pytest.mark.parametrize("value", [3.125e-4, 1.25e-3, 5e-3, 0.1, 9.996e-3, 2.0, 1e-7])
def test_three_significant_digits_in_scientific_notation(value):
    text = eta_over_s(value)
    mantissa, exponent = text.split("e")
    assert len(mantissa) == 4 and 1 <= abs(float(mantissa)) < 10
    assert float(text) == pytest.approx(value, rel=5e-3)
    assert int(exponent) == math.floor(math.log10(float(text)))


def test_the_tui_and_the_report_use_it():
    from tfminima.report.markdown import ratio
    from tui.fmt import sci

    for value in (3.125e-4, 1.25e-3, 5e-3):
        assert sci(value) == ratio(value) == eta_over_s(value)
    assert eta_over_s(None) == "–"


def test_the_cli_progress_table_uses_it(tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    from tfminima import progress

    outcome = SimpleNamespace(run_dir=SimpleNamespace(run_id="r"), hparams={"lr": 0.04, "batch_size": 32,
                              "eta_over_s": 0.04 / 32}, final={}, state="completed")
    console = Console(record=True, width=160)
    progress.print_table([outcome], console=console)
    assert eta_over_s(0.04 / 32) in console.export_text()
