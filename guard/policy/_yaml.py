# pyright: strict
"""A safe YAML reader that remembers the line of every value.

It builds on PyYAML's `SafeLoader` compose step (events -> nodes, each node with its start mark) and turns
the nodes into plain Python values itself, so that it can refuse what a policy must never contain:
anchors and aliases (which also stops alias bombs before anything is expanded), duplicate keys, keys that
are not strings, merge keys, and tags outside the core safe set. Scalars are resolved the way
`yaml.safe_load` resolves them (YAML 1.1: `yes` is true, `6e4` is text, `1.0e+4` is a number).

Hostile input is refused with a line, never a crash: values nested deeper than `MAX_DEPTH` (checked while
composing, before the recursion gets deep), a core tag whose value does not fit it (`!!int abc`,
`!!timestamp 2020-13-45`), and whole numbers outside the signed 64-bit range (which also keeps Python's
limit on int digits out of reach). Dates stay text: no policy field is a date.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import AliasEvent, NodeEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_DEPTH", "Path", "YamlDocument", "YamlProblem", "format_path", "parse_yaml"]

Path = tuple[str | int, ...]

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a document may have (a policy needs about six)."""

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP = (
    _CORE + name for name in ("str", "int", "float", "bool", "null", "timestamp")
)
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP}
# What a value under an explicit core tag must resolve to on its own (`!!float 1` is fine, `!!int 1.5` is not).
_FITS = {_INT: {_INT}, _FLOAT: {_INT, _FLOAT}, _BOOL: {_BOOL}, _NULL: {_NULL}, _TIMESTAMP: {_TIMESTAMP}}
_KIND = {_INT: "a whole number", _FLOAT: "a number", _BOOL: "true or false", _NULL: "null", _TIMESTAMP: "a date"}
_INT_LIMIT = 2**63 - 1
_INT_TEXT_LIMIT = 100  # longer int literals are refused unparsed (Python's int() is slow and capped there)


class YamlProblem(Exception):
    """The text is not a YAML document a policy may be written in. Fields: line (1-based), path, reason."""

    def __init__(self, line: int | None, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed document: the plain value and the 1-based line of every key and sequence item."""

    value: Any
    lines: dict[Path, int] = field(default_factory=lambda: {})

    def line_of(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that exists (a missing key reports its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def format_path(path: Path) -> str:
    """`("rules", 1, "when", "a")` -> `rules[1].when.a`; the empty path is ``""``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and deep nesting while composing, before anything is expanded,
    and remembers which scalars carry an explicit tag (the tag must then fit the value)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.explicit: set[int] = set()  # id() of the scalar nodes written with an explicit tag

    def compose_node(self, parent: Node | None, index: object) -> Node | None:  # type: ignore[override]
        event: Any = self.peek_event()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        line = int(event.start_mark.line) + 1  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        if isinstance(event, AliasEvent):
            raise YamlProblem(
                line,
                (),
                "YAML aliases (*name) are not allowed in policies: write the value out",
            )
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise YamlProblem(
                line,
                (),
                f"YAML anchors (&{event.anchor}) are not allowed in policies: write the value out",
            )
        if self.depth >= MAX_DEPTH:
            raise YamlProblem(
                line,
                (),
                f"values are nested more than {MAX_DEPTH} levels deep: a policy never needs this; flatten it",
            )
        self.depth += 1
        try:
            node: Node | None = super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1
        if isinstance(event, ScalarEvent) and event.tag not in (None, "!"):
            self.explicit.add(id(node))
        return node


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document into plain values plus a line map.

    Raises:
        YamlProblem: syntax error, several documents, an anchor or alias, a duplicate or non-string key,
            a merge key, or an unsafe tag. An empty document parses to None.
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlProblem(line, (), f"character #x{exc.character:04x} is not allowed in YAML: remove it") from None
    try:
        node = loader.get_single_node()
    except YamlProblem:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if "single document" in str(exc.context):
            raise YamlProblem(
                line, (), "a policy file holds one YAML document: remove the `---` and what follows it"
            ) from None
        raise YamlProblem(line, (), f"YAML syntax error: {problem}: fix the syntax") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlProblem(line, (), f"character #x{exc.character:04x} is not allowed in YAML: remove it") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(None, (), f"YAML error: {exc}") from None
    finally:
        loader.dispose()  # pyright: ignore[reportUnknownMemberType]
    doc = YamlDocument(None)
    if node is None:
        return doc
    value = _build(node, (), doc.lines, loader)
    return YamlDocument(value, doc.lines)


def _build(node: Node, path: Path, lines: dict[Path, int], loader: _Loader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, ScalarNode):
        return _scalar(node, path, loader)
    if isinstance(node, SequenceNode):
        _check_tag(node, _CORE + "seq", path)
        items: list[Any] = []
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            lines[item_path] = item.start_mark.line + 1
            items.append(_build(item, item_path, lines, loader))
        return items
    if isinstance(node, MappingNode):
        _check_tag(node, _CORE + "map", path)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, path, loader)
            key_path = (*path, key)
            if key in out:
                raise YamlProblem(key_node.start_mark.line + 1, key_path, f"duplicate key {key!r}: keep one of them")
            lines[key_path] = key_node.start_mark.line + 1
            out[key] = _build(value_node, key_path, lines, loader)
        return out
    raise YamlProblem(node.start_mark.line + 1, path, "unsupported YAML node")  # pragma: no cover


def _check_tag(node: Node, expected: str, path: Path) -> None:
    if node.tag != expected:
        raise YamlProblem(
            node.start_mark.line + 1,
            path,
            f"unsafe tag {node.tag!r}: policies use plain YAML values only; remove the tag",
        )


def _key(node: Node, path: Path, loader: _Loader) -> str:
    line = node.start_mark.line + 1
    if isinstance(node, ScalarNode) and node.tag == _CORE + "merge":
        raise YamlProblem(line, path, "YAML merge keys (<<) are not allowed in policies: write the keys out")
    if not isinstance(node, ScalarNode):
        raise YamlProblem(line, path, "mapping keys must be plain strings")
    key = _scalar(node, path, loader)
    if not isinstance(key, str):
        raise YamlProblem(
            line,
            path,
            f"key {node.value!r} is read as a {type(key).__name__}, not text: quote it ('{node.value}')",
        )
    return key


def _scalar(node: ScalarNode, path: Path, loader: _Loader) -> Any:
    tag: str = node.tag
    if tag not in _SCALAR_TAGS:
        _check_tag(node, _STR, path)
    line = node.start_mark.line + 1
    text: str = node.value
    if id(node) in loader.explicit and tag in _FITS:
        resolved = str(loader.resolve(ScalarNode, text, (True, False)))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        if resolved not in _FITS[tag]:
            name = tag.removeprefix(_CORE)
            raise YamlProblem(
                line,
                path,
                f"{_show(text)} is not {_KIND[tag]}, which its tag !!{name} says it is: "
                "fix the value or remove the tag",
            )
    if tag == _INT and len(text) > _INT_TEXT_LIMIT:
        raise YamlProblem(line, path, _out_of_range(text))
    if tag == _TIMESTAMP and id(node) not in loader.explicit:
        return text  # dates stay text: no policy field is a date (and `2020-13-45` is text too)
    construct: Any = loader.construct_object  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    try:
        value: object = construct(node)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        kind = _KIND.get(tag, "a plain value")
        raise YamlProblem(line, path, f"{_show(text)} is not {kind}: fix the value") from None
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT - 1 <= value <= _INT_LIMIT:
        raise YamlProblem(line, path, _out_of_range(text))
    if isinstance(value, datetime.date):
        return text  # dates stay text: no policy field is a date
    return value


def _show(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"


def _out_of_range(text: str) -> str:
    return (
        f"the whole number {_show(text)} is out of range: policies take whole numbers from "
        f"{-_INT_LIMIT - 1} to {_INT_LIMIT}; write a smaller one (or a number like 1.0e+30)"
    )
