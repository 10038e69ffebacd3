# pyright: strict
"""A safe YAML reader that remembers the line of every value.

It builds on PyYAML's `SafeLoader` compose step (events -> nodes, each node with its start mark) and turns
the nodes into plain Python values itself, so that it can refuse what a policy must never contain:
anchors and aliases (which also stops alias bombs before anything is expanded), duplicate keys, keys that
are not strings, merge keys, and tags outside the core safe set. Scalars are resolved the way
`yaml.safe_load` resolves them (YAML 1.1: `yes` is true, `6e4` is text, `1.0e+4` is a number).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["Path", "YamlDocument", "YamlProblem", "format_path", "parse_yaml"]

Path = tuple[str | int, ...]

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + name for name in ("str", "int", "float", "bool", "null", "timestamp")}


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
    """SafeLoader that refuses anchors and aliases while composing, before anything is expanded."""

    def compose_node(self, parent: Node | None, index: object) -> Node | None:  # type: ignore[override]
        event: Any = self.peek_event()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(event, AliasEvent):
            raise YamlProblem(
                event.start_mark.line + 1,
                (),
                "YAML aliases (*name) are not allowed in policies: write the value out",
            )
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise YamlProblem(
                event.start_mark.line + 1,
                (),
                f"YAML anchors (&{event.anchor}) are not allowed in policies: write the value out",
            )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


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
    if node.tag not in _SCALAR_TAGS:
        _check_tag(node, _CORE + "str", path)
    construct: Any = loader.construct_object  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    value: object = construct(node)
    if isinstance(value, datetime.date):
        return node.value  # dates stay text: no policy field is a date
    return value
