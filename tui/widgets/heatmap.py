"""The η × S heatmap: rows S, columns η (log-spaced), cells coloured by a final metric.

Every cell also carries the letter of its η/S value in that value's colour, so runs on one
iso-ratio diagonal read as a line of equal letters: if the paper is right, the cell colours
along each diagonal match.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from tui import fmt
from tui.colours import PALETTE, hex_colour, ramp
from tui.comparison import METRICS, HeatGrid

CELL = 9
LABEL = 7
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _value_text(metric: str, value: float) -> str:
    return fmt.pct(value) if "accuracy" in metric else fmt.num(value, 3)


def _contrast(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


class Heatmap(Widget):
    """Renders a :class:`HeatGrid`; ``show(grid, metric)`` replaces it."""

    DEFAULT_CSS = """
    Heatmap { height: auto; min-height: 4; width: auto; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.grid: HeatGrid | None = None
        self.metric = "val_accuracy"

    def show(self, grid: HeatGrid, metric: str) -> None:
        self.grid, self.metric = grid, metric
        self.refresh(layout=True)

    def get_content_width(self, container, viewport) -> int:
        ncols = self.grid.eta_pos[-1] + 1 if self.grid is not None and self.grid.etas else 0
        return max(LABEL + ncols * CELL, 56)

    def get_content_height(self, container, viewport, width: int) -> int:
        if self.grid is None or not self.grid.sizes:
            return 2
        return 1 + (self.grid.size_pos[-1] + 1) + len(self._legend(width))

    def _legend(self, width: int) -> list[Text]:
        """The η/S letters and the colour ramp, wrapped to ``width`` between items."""
        g = self.grid
        items = [Text("equal letter = equal η/S:", style="dim")]
        for k, ratio in enumerate(g.ratios):
            items.append(Text.assemble((LETTERS[k % len(LETTERS)], f"bold {hex_colour(PALETTE[k % len(PALETTE)])}"),
                                       f" {fmt.sci(ratio)}"))
        ramp_text = Text(f"{METRICS.get(self.metric, self.metric)}: ", style="dim")
        if g.vmin is not None:
            ramp_text.append(_value_text(self.metric, g.vmin) + " ")
            for t in (0.0, 0.25, 0.5, 0.75, 1.0):
                ramp_text.append("  ", style=f"on {hex_colour(ramp(t))}")
            ramp_text.append(" " + _value_text(self.metric, g.vmax))
        lines, line = [], Text()
        for item in items:
            if line.cell_len and line.cell_len + 2 + item.cell_len > width:
                lines.append(line)
                line = Text()
            if line.cell_len:
                line.append("  ")
            line.append_text(item)
        lines.append(line)
        lines.append(ramp_text)
        return lines

    def render(self) -> RenderResult:
        g = self.grid
        label = METRICS.get(self.metric, self.metric)
        if g is None or not g.sizes:
            return Text(f"η × S heatmap of {label}: no runs with η and S yet", style="dim")
        ncols = g.eta_pos[-1] + 1
        col_of = {pos: i for i, pos in enumerate(g.eta_pos)}
        row_of = {pos: i for i, pos in enumerate(g.size_pos)}
        out = Text()
        out.append("S ╲ η".ljust(LABEL), style="bold")
        for c in range(ncols):
            head = fmt.num(g.etas[col_of[c]], 3) if c in col_of else ""
            out.append(head.center(CELL), style="bold")
        out.append("\n")
        vmin, vmax = g.vmin, g.vmax
        span = (vmax - vmin) if vmin is not None and vmax != vmin else None
        for r in range(g.size_pos[-1] + 1):
            if r not in row_of:
                out.append("\n")
                continue
            i = row_of[r]
            out.append(str(g.sizes[i]).rjust(LABEL - 1) + " ", style="bold")
            for c in range(ncols):
                j = col_of.get(c)
                cell = (i, j)
                if j is None or cell not in g.ratio_of:
                    out.append("·".center(CELL), style="dim")
                    continue
                letter = LETTERS[g.ratio_of[cell] % len(LETTERS)]
                letter_colour = hex_colour(PALETTE[g.ratio_of[cell] % len(PALETTE)])
                value = g.values.get(cell)
                if value is None:
                    out.append(f" {letter} " + "–".center(CELL - 4) + " ", style=letter_colour)
                    continue
                bg = ramp((value - vmin) / span if span else 0.5)
                style = f"{_contrast(bg)} on {hex_colour(bg)}"
                out.append(" ")
                out.append(letter, style=f"bold {letter_colour} on {hex_colour(bg)}")
                out.append(" " + _value_text(self.metric, value).rjust(CELL - 4) + " ", style=style)
            out.append("\n")
        for line in self._legend(max(self.size.width, 20)):
            out.append_text(line)
            out.append("\n")
        out.rstrip()
        return out
