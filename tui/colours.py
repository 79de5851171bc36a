"""Stable colours: a run keeps its colour for the whole session, whatever else is selected."""

from __future__ import annotations

# Tableau 10: distinguishable on dark and light backgrounds.
PALETTE: list[tuple[int, int, int]] = [
    (78, 121, 167), (242, 142, 43), (225, 87, 89), (118, 183, 178), (89, 161, 79),
    (237, 201, 72), (176, 122, 161), (255, 157, 167), (156, 117, 95), (186, 176, 172),
]

STATE_STYLES: dict[str, str] = {
    "queued": "dim",
    "pending": "dim",
    "starting": "cyan",
    "running": "bold cyan",
    "completed": "green",
    "cancelled": "yellow",
    "failed": "bold red",
    "diverged": "magenta",
    "crashed": "bold red",
    "corrupt": "bold magenta",  # its files cannot be read (tfminima.runfiles)
}


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


class ColourBook:
    """Hands out palette colours: a new run gets the least used colour not shown right now."""

    def __init__(self, palette: list[tuple[int, int, int]] = PALETTE):
        self.palette = palette
        self.assigned: dict[str, int] = {}

    def colour(self, key: str, shown: list[str] = ()) -> tuple[int, int, int]:
        if key not in self.assigned:
            busy = {self.assigned[k] for k in shown if k in self.assigned}
            uses = [0] * len(self.palette)
            for i in self.assigned.values():
                uses[i] += 1
            free = [i for i in range(len(self.palette)) if i not in busy] or list(range(len(self.palette)))
            self.assigned[key] = min(free, key=lambda i: (uses[i], i))
        return self.palette[self.assigned[key]]

    def colours(self, keys: list[str]) -> dict[str, tuple[int, int, int]]:
        return {k: self.colour(k, keys) for k in keys}


# A sequential ramp (viridis, 8 stops) for heatmap cells.
RAMP: list[tuple[int, int, int]] = [
    (68, 1, 84), (70, 50, 127), (54, 92, 141), (39, 127, 142),
    (31, 161, 135), (74, 194, 109), (159, 218, 58), (253, 231, 37),
]


def ramp(t: float) -> tuple[int, int, int]:
    """Colour at ``t`` in [0, 1] along :data:`RAMP` (linear between stops)."""
    t = min(max(t, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    f = t - i
    a, b = RAMP[i], RAMP[i + 1]
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))
