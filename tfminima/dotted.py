"""Dotted keys (``optimizer.lr``) in nested dicts: the one way to read and write them.

A leaf module (standard library only): the config loader (``--set``, profiles), the sweep expander
(grid and zip axes) and the TUI's form all address config values this way, so they share it
instead of each keeping a copy.
"""

from __future__ import annotations

from typing import Any


def get_dotted(data: dict, key: str, default: Any = None) -> Any:
    """The value at ``a.b.c``, or ``default`` where a section or the key is missing."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating (or replacing non-dict) sections as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
