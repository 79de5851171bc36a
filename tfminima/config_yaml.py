"""Config files as text: bounded reading, YAML with the line of every key, and the errors that cite them.

No schema here (:mod:`tfminima.config_schema`) and no validation (:mod:`tfminima.config`): this
module turns a file into ``(data, lines)`` and back (``to_yaml``), and holds the
:class:`ConfigError` every config problem is reported through, as
``file:line: dotted.key: what is wrong (did you mean 'x'?)``.

A file is refused before YAML sees it when it is larger than the config limit (only limit + 1
bytes are read), not UTF-8, or not a file; a document whose aliases expand past
:data:`MAX_NODES` values, refer to themselves, or nest deeper than :data:`MAX_DEPTH` is refused
before the schema walks it.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml

from tfminima import limits, safe_io

MAX_NODES = 100_000  # values in a document, aliases expanded ("billion laughs" guard)
MAX_DEPTH = 100  # nesting levels (the schema needs 5; pydantic and deepcopy recurse)


# --------------------------------------------------------------------------- errors
class Problem(typing.NamedTuple):
    """One thing wrong with a config: where, which key, what, and a suggestion."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found in one config; ``str()`` is ready to print."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def suggest(word: Any, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or nothing."""
    match = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


# --------------------------------------------------------------------------- reading
def read_text(path: str | Path) -> str:
    """The text of a config file, or ConfigError: missing, a directory, too large, not UTF-8."""
    try:
        limit = limits.value("config_bytes")
    except limits.LimitError as err:
        raise ConfigError([Problem(str(path), None, "", str(err))]) from None
    try:
        return safe_io.read_text(path, limit)
    except safe_io.FileProblem as err:
        reason = "cannot read: no such file" if err.missing else f"cannot read: it {err.reason}"
        if "over the limit" in reason:
            reason += f" for a config file (set {limits.LIMITS['config_bytes'].variable} to raise it)"
        elif "UTF-8" in reason:
            reason += ": is this a YAML file?"
        raise ConfigError([Problem(str(path), None, "", reason)]) from None


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that also records the line of every mapping key and sequence item."""


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml where PyYAML has it: SafeLoader's constructor over a parser ~10x faster. Only for text that
:func:`nesting_within` has passed."""


def nesting_within(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether no collection in ``text`` nests deeper than ``limit`` (False for text YAML cannot parse).

    Read from the parser's events, which need no recursion: libyaml's composer recurses in C, and a
    ``[[[…]]]`` or ``- - - …`` of 100,000 levels (200 kB) overflows the C stack -- a segfault -- where
    the pure-Python composer raises RecursionError. Only text that passes goes to libyaml.
    """
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_FAST_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit:
                    return False
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return False
    return True


def _document(loader_class, text: str):
    """``(data, node)``: the document composed once and constructed from its node."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def _parse(text: str):
    """``(data, node)`` by libyaml where the text is shallow enough; any problem is read again by the
    pure-Python loader, whose errors (and lines) are the ones reported."""
    if nesting_within(text):
        try:
            return _document(_FAST_LOADER, text)
        except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
            pass  # read again below, for the pure-Python loader's message and line
    return _document(_LineLoader, text)


def load_data(text: str):
    """The document's data (no lines): libyaml where the text is shallow enough, else the pure-Python
    loader, whose YAMLError or RecursionError the caller turns into a problem."""
    return _parse(text)[0]


def _node_lines(node) -> dict[tuple, int]:
    """Map each path (tuple of keys / indices) under ``node`` to its 1-based line."""
    lines: dict[tuple, int] = {}
    seen: set[int] = set()

    def walk(n, path):
        if id(n) in seen:  # an alias: its lines are those of its anchor (and it may contain itself)
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                lines[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return lines


def line_for(lines: dict[tuple, int], path: tuple) -> int | None:
    """The line of ``path``, else of its nearest parent that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def read_yaml(text: str, file: str = "<config>") -> tuple[dict, dict[tuple, int]]:
    """Parse YAML into (data, lines); syntax errors become a ConfigError with the line."""
    try:
        data, node = _parse(text)
        lines = _node_lines(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        problem = (err.problem or "invalid YAML").strip()
        raise ConfigError([Problem(file, line, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as err:
        raise ConfigError([Problem(file, None, "", f"YAML error: {err}")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, None, "", "the document is nested too deeply")]) from None
    except (ValueError, OverflowError):  # a scalar YAML reads as a type it cannot build (2024-13-01, 10**5000)
        line, what = _unbuildable_scalar(text)
        raise ConfigError([Problem(file, line, "", f"YAML value {what} cannot be read")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "", "the top level must be a mapping of keys")])
    return data, lines


def _unbuildable_scalar(text: str) -> tuple[int | None, str]:
    """(line, shown value) of the first scalar whose YAML type cannot be built (a date with month 13, an
    integer past Python's digit limit); the document already parsed, so only its scalars can fail."""
    loader = _LineLoader(text)
    try:
        stack = [loader.get_single_node()]
        while stack:
            node = stack.pop()
            if isinstance(node, yaml.ScalarNode):
                try:
                    loader.construct_object(node)
                except (ValueError, OverflowError) as err:
                    value = node.value if len(node.value) <= 40 else node.value[:37] + "..."
                    why = "an integer of more than 4300 digits" if "integer string conversion" in str(err) else str(err)
                    return node.start_mark.line + 1, f"{value!r} ({why})"
            elif isinstance(node, yaml.MappingNode):
                stack.extend(v for pair in reversed(node.value) for v in reversed(pair))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(reversed(node.value))
    finally:
        loader.dispose()
    return None, "of the document"


def check_document_shape(data: Any, file: str, key: str = "") -> None:
    """YAML aliases can make a document refer to itself or expand exponentially: refuse both,
    and documents nested deeper than anything the schema holds. ``key``: the --set key of a value."""
    what = "the value" if key else "the document"
    count, stack = 0, [(data, frozenset())]
    while stack:
        node, ancestors = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError([Problem(file, None, key, f"{what} expands to more than {MAX_NODES} values "
                                                        "(a list that long, or YAML aliases repeated inside each other?)")])
        if len(ancestors) > MAX_DEPTH:
            raise ConfigError([Problem(file, None, key, f"{what} is nested too deeply (more than {MAX_DEPTH} levels)")])
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                raise ConfigError([Problem(file, None, key, "a YAML alias refers to a node that contains it "
                                                            "(a recursive document)")])
            inner = ancestors | {id(node)}
            stack.extend((v, inner) for v in (node.values() if isinstance(node, dict) else node))


def parse_override(item: str) -> tuple[str, Any]:
    """Parse a ``--set dotted.key=value`` override; the value is read as YAML."""
    if "=" not in item:
        raise ConfigError([Problem("--set", None, item, "expected key=value")])
    key, _, raw = item.partition("=")
    key = key.strip()
    if key.count(".") >= MAX_DEPTH:
        raise ConfigError([Problem("--set", None, key[:60] + "...", f"the key is nested too deeply (more than {MAX_DEPTH} levels)")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):  # not YAML, or a value YAML cannot build
        value = raw
    check_document_shape(value, "--set", key)  # named here, not as the config file's problem once merged into it
    return key, value


# --------------------------------------------------------------------------- writing
class _Dumper(yaml.SafeDumper):
    """Block mappings, but flow style for lists of plain values ([100, 100])."""


def _represent_list(dumper, data):
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def to_yaml(spec: Any, *, include_sweep: bool = True) -> str:
    """The resolved spec (an ``ExperimentSpec``, defaults filled) as YAML, in schema order."""
    data = spec.model_dump(mode="json")
    if not include_sweep or spec.sweep.is_empty:
        data.pop("sweep", None)
    if not data.get("profiles"):
        data.pop("profiles", None)
    if not data.get("profile"):
        data.pop("profile", None)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
