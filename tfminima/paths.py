"""Names that become folders, and the path arguments of the commands, checked before anything is written.

An experiment's ``name``, a sweep's labels and every run id end up as one folder name below
``--out``; a name such as ``..`` or ``a/b`` would put runs elsewhere, and one with a NUL or 300
characters would be accepted by validation and then fail deep inside a run. So each is checked as
a single safe path component at validation, and the runner checks once more, after resolving
symbolic links, that every folder it is about to make lies inside the folder it writes to.
Standard library only: the config, the sweep expander, the CLI and the TUI all call it.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from tfminima.limits import NAME_CHARS

USAGE, ENVIRONMENT = 2, 1  # exit statuses: the command was wrong / the machine refused


class PathError(ValueError):
    """A path argument or a folder name that cannot be used; ``exit_code`` says whose fault it is."""

    def __init__(self, message: str, exit_code: int = USAGE, reason: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason or message  # the why alone ("/x is a file, not a directory"), for callers' own wording


def component_problem(name: object) -> str | None:
    """Why ``name`` cannot be one folder name (None when it can)."""
    if not isinstance(name, str):
        return f"must be text, not {type(name).__name__}"
    if not name:
        return "is empty: it must be one folder name"
    if name in (".", ".."):
        return f"{name!r} is not usable as a folder name"
    if "/" in name or "\\" in name:
        return f"{name!r} contains a path separator ('/' or '\\'): it must be one folder name"
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        what = "a NUL character" if bad == "\0" else f"the control character {bad!r}"
        if unicodedata.category(bad) == "Cs":
            what = "a lone surrogate (not valid Unicode)"
        return f"{name[:40]!r} contains {what}, which no folder name may hold"
    if len(name) > NAME_CHARS:
        return f"{name[:40]!r}... is {len(name)} characters long, over the limit of {NAME_CHARS} for a folder name"
    return None


def check_component(name: object, what: str) -> str:
    """``name`` if it can be one folder name, else ValueError (``what`` names it in the message)."""
    problem = component_problem(name)
    if problem:
        raise ValueError(f"{what} {problem}".strip())
    return name  # type: ignore[return-value]


def inside(root: str | Path, path: str | Path) -> bool:
    """Whether ``path`` (symbolic links resolved) is ``root`` or lies below it."""
    root_real, path_real = os.path.realpath(root), os.path.realpath(path)
    return path_real == root_real or path_real.startswith(root_real.rstrip(os.sep) + os.sep)


def check_inside(root: str | Path, *paths: str | Path) -> None:
    """Raise :class:`PathError` unless every path lies inside ``root`` (the folder a command writes to)."""
    for path in paths:
        if not inside(root, path):
            real = os.path.realpath(path)
            shown = f"{path} (that is {real})" if os.path.abspath(path) != real else str(path)
            raise PathError(f"{shown} is outside {root}: nothing is written outside the folder a command writes to")


def existing_directory(path: str | Path, what: str, *, must_exist: bool = True) -> Path:
    """A directory argument (RUNS_DIR, a run to resume or analyze); PathError when it is a file or missing."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists() or path.is_symlink():
        kind = "a file" if path.is_file() else "not a directory (a broken link or a special file)"
        raise PathError(f"{what} {path} is {kind}, not a directory")
    if must_exist:
        raise PathError(f"{what} {path}: no such directory")
    ancestor = path.parent  # it may appear later, unless something that is no folder is in its way
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise PathError(f"{what} {path} can never be a directory: {ancestor} is not a directory", ENVIRONMENT)
    return path


def output_directory(path: str | Path, what: str = "--out") -> Path:
    """A folder a command will create or write into: refused (with the reason) when that cannot work.

    A path that is a file is a usage error; a path below a file, or below a folder this user may
    not write, is the machine's refusal ("cannot write"). Other failures show when writing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PathError(f"{what} {path} is a file, not a directory")
    ancestor = path
    while not ancestor.exists() and not ancestor.is_symlink():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    why = None
    if ancestor != path and ancestor.exists() and not ancestor.is_dir():
        why = "is a file, not a directory"
    elif ancestor.is_symlink() and not ancestor.exists():
        why = "is a broken symbolic link"
    elif ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
        why = "is not writable (permission denied)"
    if why is not None:
        raise PathError(f"cannot write {path}: {ancestor} {why}", ENVIRONMENT, f"{ancestor} {why}")
    return path
