"""Plot building on time: plotext_fast's numpy helpers give plotext's own results and the same
figures, and panels over a frame's building budget are drawn in the next frames, all of them."""

import asyncio
import math
import random

import numpy as np
import plotext
import pytest
from textual_plotext.plot import Plot
from tui_support import build_runs, wait_for

from tui.app import create_app
from tui.widgets import plotext_fast as fast
from tui.widgets import plots
from tui.widgets.plots import MetricPlot

ORIGINAL = fast.ORIGINAL


@pytest.fixture
def stock():
    """plotext's own helpers for the duration of a test (the fast ones back afterwards)."""
    was = fast.installed()
    fast.uninstall()
    yield
    if was:
        fast.install(force=True)
    else:
        fast.uninstall()


def random_data(rng, n):
    scale = 10 ** rng.uniform(-6, 6)
    kind = rng.random()
    if kind < 0.1:
        return [float(rng.randint(-5, 5)) for _ in range(n)]  # repeated values, ties
    if kind < 0.2:
        return [1.0 + i * 1e-9 for i in range(n)]  # nearly flat
    return [rng.gauss(0, 1) * scale + rng.uniform(-1, 1) * scale for _ in range(n)]


def test_helpers_match_plotext(stock):
    rng = random.Random(0)
    for trial in range(200):
        n = rng.randint(0, 80)
        data = random_data(rng, n)
        lim = ORIGINAL["get_lim"](data)
        assert fast.get_lim(data) == lim
        if rng.random() < 0.3:
            lim = [lim[0] - rng.random() * abs(lim[0]), lim[1] + rng.random() * abs(lim[1])]
        bins = rng.randint(1, 160)
        cells = ORIGINAL["get_matrix_data"](data, lim, bins)
        assert fast.get_matrix_data(data, lim, bins) == cells, trial
        ys = [rng.randint(-3, 40) for _ in range(n)]
        other = (["braille"] * n, [(1, 2, 3)] * n, ["default"] * n)
        if rng.random() < 0.3:
            other = ([rng.choice(["braille", "dot"]) for _ in range(n)], [(rng.randint(0, 9),) * 3 for _ in range(n)],
                     ["default"] * n)
        lines = ORIGINAL["get_lines"](cells, ys, *other)
        assert fast.get_lines(cells, ys, *other) == lines, trial
        assert fast.join([cells, ys]) == ORIGINAL["join"]([cells, ys])
        if lines[0]:
            for fx, fy in ((2, 4), (2, 2), (2, 3), (1, 1)):
                xf, yf = [fx] * len(lines[0]), [fy] * len(lines[0])
                assert fast.hd_group(lines[0], lines[1], xf, yf) == ORIGINAL["hd_group"](lines[0], lines[1], xf, yf)


def test_other_inputs_go_to_plotext(stock):
    data = [1.0] * 10 + [math.nan] + [2.0] * 10
    assert fast.get_lim(data) == ORIGINAL["get_lim"](data) == [1.0, 2.0]
    assert fast.get_matrix_data(data, [1.0, 2.0], 20)[10] is data[10]  # NaN passes through, as in plotext
    assert fast.join([[1, [2, 3]], [4] * 20]) == [1, 2, 3] + [4] * 20
    assert fast.join([1, [2]]) == [1, 2]
    mixed = list(range(20)) + [20.5]
    assert fast.get_lim(mixed) == [0, 20.5]


def build(traces, width=70, height=14, logx=False):
    plt = Plot()
    plt.plotsize(width, height)
    for kind, x, y, kwargs in traces:
        (plt.scatter if kind == "scatter" else plt.plot)(x, y, **kwargs)
    plt.title("a title")
    if logx:
        plt.xscale("log")
    return plt.build()


def test_figures_are_identical(stock):
    rng = np.random.default_rng(0)
    x = np.arange(1, 141, dtype=float)
    traces = []
    for i in range(12):
        y = 2.3 * np.exp(-x / (20 + 5 * i)) + 0.05 * rng.standard_normal(len(x))
        marker = "braille" if i % 2 == 0 else "dot"
        traces.append(("plot", x.tolist(), y.tolist(), {"color": (i * 20, 100, 200), "marker": marker}))
    traces.append(("scatter", [1e-4, 3e-4, 1e-3] * 6, rng.random(18).tolist(), {"color": (1, 2, 3), "marker": "●",
                                                                                   "label": "S=32"}))
    cases = [(traces[:12], {}), (traces[:3], {"width": 30, "height": 9}), (traces[12:], {"logx": True}),
             ([("plot", x.tolist(), [0.5] * len(x), {"marker": "braille"})] * 2, {})]
    expected = [build(t, **kw) for t, kw in cases]
    assert fast.install(force=True)
    assert [build(t, **kw) for t, kw in cases] == expected


def test_installed_on_the_checked_version():
    import tui.widgets.plots  # noqa: F401  (installs them)

    assert fast.installed() == (plotext.__version__ == fast.CHECKED_VERSION)


def test_panels_over_the_frame_budget_draw_in_the_next_frames(tmp_path, monkeypatch):
    build_runs(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs", start="monitor")
        async with app.run_test(size=(160, 50)) as pilot:
            assert await wait_for(pilot, lambda: len(app.store.records) == 8 and app._poller.is_finished, interval=0.02)
            panels = list(app.screen.query(MetricPlot))
            shown = lambda: [p for p in panels if p.region.area]
            drawn = lambda: all(p._cache and p._cache[0][0] == p._signature and not p._pending
                                for p in shown())
            app.selected = {"quickstart/lr0.01-bs32-s0", "memo/lr0.05-bs50-s0"}
            app.redraw()
            assert await wait_for(pilot, drawn, interval=0.02)
            for p in panels:
                p.min_interval = 0
            monkeypatch.setattr(plots, "FRAME_BUDGET", 0.0)  # one build a frame
            frame_spent = []  # seconds already built in the frame when a build starts
            build = MetricPlot._build
            monkeypatch.setattr(MetricPlot, "_build", lambda self: (frame_spent.append(MetricPlot._frame[1]),
                                                                    build(self))[1])
            app.selected = {"quickstart/lr0.16-bs32-s0", "quickstart/lr0.04-bs128-s0", "memo/lr0.05-bs200-s0"}
            app.redraw()
            assert await wait_for(pilot, drawn, interval=0.02)
            assert len(shown()) == 5 and len(frame_spent) >= 5 and not any(frame_spent)  # constant schedules: no panel
            for p in shown():  # what each panel shows is a build of its traces
                assert p._cache[1] == build(p)

    asyncio.run(main())


def test_figure_text_is_the_figure_from_ansi():
    """MetricPlot reads plotext's matrix into a Text directly: the same characters and, character
    for character, the same styles as parsing the ANSI that plotext would print."""
    import plotext._figure as figure_module
    from rich.text import Text

    def styles(text):
        out = [None] * len(text.plain)
        for span in text.spans:
            out[span.start:span.end] = [span.style] * (span.end - span.start)
        return out

    x = np.arange(1, 301.0)
    for theme, size in (("dark", (90, 24)), ("clear", (50, 12))):
        fig = figure_module._figure_class()
        fig.plotsize(*size)
        for i in range(12):
            fig.plot(x.tolist(), (np.sin(x / (20 + i)) + i).tolist(), marker="braille", color=(20 * i, 250 - 20 * i, 90))
            fig.scatter(x[::7].tolist(), np.cos(x[::7] / (9 + i)).tolist(), marker="dot", color=(200, 15 * i, 40))
        fig.title("panel")
        fig.xlabel("epoch")
        fig.theme(theme)
        expected = Text.from_ansi(fig.build())
        got = fast.figure_text(fig)
        assert got.plain == expected.plain
        assert [s or None for s in styles(got)] == [s or None for s in styles(expected)]
