"""Short number formats for narrow columns, and times and statuses as people read them."""

from __future__ import annotations

import math
import time

from tfminima import formats


def num(value, digits: int = 3) -> str:
    """``0.01``, ``128``, ``1.2e+03``; an en dash when unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}g}"


def sci(value, digits: int = 3) -> str:
    """Compact scientific notation for η/S: ``3.12e-4``, as the CLI and the reports write it
    (:func:`tfminima.formats.eta_over_s`)."""
    return formats.eta_over_s(value, digits)


def pct(value) -> str:
    """Accuracy as a percentage: ``91.2``."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100 * value:.1f}"


def duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def clock(timestamp) -> str:
    """A Unix time as local date and time, ``2024-05-02 14:03:17``; an en dash when unknown."""
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def status_lines(status: dict, state: str, now: float | None = None) -> str:
    """status.json as a reader wants it: state and progress, when it started and ended (local
    times, and how long it took), which process on which host, on what devices."""
    lines = [f"state     {state}"]
    done, epochs = status.get("epochs_done"), status.get("epochs")
    if epochs:
        lines[0] += f", {done or 0} of {epochs} epochs done"
    started, ended, updated = status.get("started"), status.get("ended"), status.get("updated")
    if started:
        lines.append(f"started   {clock(started)}")
    if ended:
        took = f" (after {duration(ended - started)})" if isinstance(started, (int, float)) else ""
        lines.append(f"ended     {clock(ended)}{took}")
    elif isinstance(updated, (int, float)) and state in ("running", "starting"):
        now = time.time() if now is None else now
        lines.append(f"updated   {clock(updated)} ({duration(max(now - updated, 0))} ago)")
    if status.get("pid"):
        lines.append(f"process   {status['pid']} on {status.get('host') or '?'}")
    dist = status.get("distribution") or {}
    if dist:
        parts = [str(dist.get("strategy", "?"))]
        if dist.get("replicas"):
            parts.append(f"{dist['replicas']} replica{'s' if dist['replicas'] != 1 else ''}")
        if dist.get("global_batch_size"):
            parts.append(f"global batch {dist['global_batch_size']}")
        lines.append("devices   " + ", ".join(parts))
    return "\n".join(lines)
