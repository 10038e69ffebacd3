# pyright: strict
"""Reading policy files: bytes -> line-numbered YAML -> validated model -> compiled `Policy`.

Every failure becomes one `PolicyError` with the file, the 1-based line, the dotted field and a reason
that says what to do; nothing else escapes (`OSError`, `UnicodeDecodeError`, YAML and pydantic errors are
translated here, once).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path as FsPath
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from guard.errors import PolicyError
from guard.policy._field_stops_load import field_stops
from guard.policy._policy import Policy
from guard.policy._rules import RuleProblem, compile_owners, compile_rules, retry_lines
from guard.policy._spec import PolicySpec
from guard.policy._systems import compile_systems, system_conflicts
from guard.policy._types import NO_STOP, Notify, Slack, StopRules
from guard.policy._values import json_type, looks_numeric
from guard.policy._yaml import Path, YamlDocument, YamlProblem, format_path, parse_yaml

__all__ = [
    "MAX_BYTES",
    "load_policy",
    "parse_model",
    "policy_from_bytes",
    "policy_from_text",
    "read_bytes",
    "read_text",
]

MAX_BYTES = 1024 * 1024
# Opening never waits (a FIFO with no writer would block forever) and never leaks the descriptor to children.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
Model = TypeVar("Model", bound=BaseModel)
_KINDS = {
    "int_type": "a whole number",
    "float_type": "a number",
    "string_type": "text",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
}


def load_policy(path: str | FsPath) -> Policy:
    """Load and compile the policy file at `path`.

    Raises:
        PolicyError: the file cannot be read (missing, not a regular file, over 1 MiB, not UTF-8), is not
            valid YAML, breaks the format, or describes a policy Guard refuses (see `compile_rules`).
    """
    source = str(path)
    data = read_bytes(path)
    return policy_from_bytes(data, source=source)


def read_bytes(path: str | FsPath) -> bytes:
    """The bytes of a policy or cases file: a regular file of at most `MAX_BYTES`, checked before reading.

    The file is opened without waiting (a FIFO would otherwise block until a writer appears), its type and
    size are read from the open descriptor (so a swap between check and read changes nothing), and at most
    `MAX_BYTES + 1` bytes are ever read. Directories, FIFOs, devices, sockets, dangling links and link
    loops are refused with a reason that names what the path is.
    """
    source = str(path)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise PolicyError(file=source, line=None, field="", reason=_open_reason(path, exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError(file=source, line=None, field="", reason=_kind_reason(info.st_mode))
        if info.st_size > MAX_BYTES:
            raise PolicyError(file=source, line=None, field="", reason=_too_big(info.st_size))
        data = _read_at_most(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise PolicyError(
            file=source,
            line=None,
            field="",
            reason=f"cannot read the file ({exc.strerror or exc}): check its permissions",
        ) from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:  # it grew after the check
        raise PolicyError(file=source, line=None, field="", reason=_too_big(len(data)))
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _too_big(size: int) -> str:
    return f"the file is larger than 1 MiB ({size} bytes): a policy this big is refused; split or trim it"


def _open_reason(path: str | FsPath, exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return (
                f"is a symbolic link to {os.readlink(path)!r}, which does not exist: "
                "point the link at a policy file or remove it"
            )
        return "no such file: check the path (policies live in policies/<team>.yaml)"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (or links nested too deep): point the link at a policy file"
    if exc.errno == errno.EISDIR:
        return _kind_reason(stat.S_IFDIR)
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is not a directory: check the path"
    return f"cannot open the file ({exc.strerror or exc}): check its permissions"


def _kind_reason(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory: give the path of a .yaml file"
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    return f"is {kind}, not a regular file: give the path of a .yaml file"


def read_text(path: str | FsPath) -> tuple[str, bytes]:
    """The decoded text and raw bytes of a file (see `read_bytes`); bad UTF-8 is a `PolicyError`."""
    data = read_bytes(path)
    return _decode(data, str(path)), data


def policy_from_text(text: str, *, source: str) -> Policy:
    """Compile a policy from YAML text; `source` names it in errors and, when it ends in .yaml/.yml, its
    stem must equal `team`. The version hashes the UTF-8 encoding of `text`."""
    return _compile(text, text.encode("utf-8"), source)


def policy_from_bytes(data: bytes, *, source: str) -> Policy:
    """Compile a policy from the raw bytes of a file (the version hashes exactly these bytes)."""
    return _compile(_decode(data, source), data, source)


def parse_model(text: str, source: str, model: type[Model]) -> tuple[Model, YamlDocument]:
    """Parse YAML text with line numbers and validate it as `model`.

    Raises:
        PolicyError: YAML problems, an empty document or one that is not a mapping, and the first
            validation error, mapped back to the line of the offending key.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise PolicyError(
            file=source,
            line=None,
            field="",
            reason="the text is larger than 1 MiB: a policy this big is refused; split or trim it",
        )
    try:
        doc = parse_yaml(text)
    except YamlProblem as exc:
        raise PolicyError(file=source, line=exc.line, field=format_path(exc.path), reason=exc.reason) from None
    if doc.value is None:
        raise PolicyError(
            file=source,
            line=1,
            field="",
            reason="the file is empty: write the policy (see `guard policy schema`)",
        )
    raw: object = doc.value
    if not isinstance(raw, dict):
        raise PolicyError(
            file=source,
            line=1,
            field="",
            reason=f"the document is {json_type(raw)}, not a mapping: start with `team: <name>`",
        )
    try:
        return model.model_validate(raw), doc
    except ValidationError as exc:
        raise _from_validation(exc, doc, source) from None


def _compile(text: str, data: bytes, source: str) -> Policy:
    spec, doc = parse_model(text, source, PolicySpec)
    stem = _stem(source)
    if stem is not None and spec.team != stem:
        raise PolicyError(
            file=source,
            line=doc.line_of(("team",)),
            field="team",
            reason=f"team {spec.team!r} does not match the file name {stem!r}: rename the file or set `team: {stem}`",
        )
    try:
        rules = compile_rules(spec, doc.line_of)
        systems = compile_systems(spec, doc.line_of)
        system_conflicts(spec, systems)
        defaults_retry = spec.defaults.retry if spec.defaults is not None else None
        owners = None if spec.owners is None else compile_owners(spec.owners, ("owners",), spec.roles(), doc.line_of)
        slack = _slack(spec)
    except RuleProblem as exc:
        raise PolicyError(
            file=source, line=doc.line_of(exc.path), field=format_path(exc.path), reason=exc.reason
        ) from None
    return Policy(
        team=spec.team,
        version="sha256:" + hashlib.sha256(data).hexdigest()[:16],
        source=source,
        description=spec.description or "",
        rules=rules,
        reviewers={name: frozenset(roles) for name, roles in spec.roles().items()},
        reviewer_lines={name: doc.line_of(("reviewers", name)) for name in spec.reviewers},
        secret_fields=frozenset(spec.secrets),
        owners=owners,
        notify=None
        if spec.notify is None
        else Notify(
            webhook=spec.notify.webhook,
            webhook_env=spec.notify.webhook_env,
            secret_env=spec.notify.secret_env,
            events=frozenset(spec.notify.events),
        ),
        slack=slack,
        systems=systems,
        drill=spec.drill.stand_ins if spec.drill is not None else None,
        default_retry=() if defaults_retry is None else retry_lines(defaults_retry, ("defaults", "retry"), doc.line_of),
        stop=NO_STOP
        if spec.stop is None
        else StopRules(
            repeats=spec.stop.repeats,
            max_calls=tuple(spec.stop.max_calls.items()),
            rate=tuple((glob, rate.calls, rate.per) for glob, rate in spec.stop.rate.items()),
            fields=field_stops(spec.stop, source, doc.line_of),
        ),
    )


def _slack(spec: PolicySpec) -> Slack | None:
    """The team's Slack app (None without a `slack:` block), mapping each reviewer's Slack id (`reviewers:`) to them.

    Raises:
        RuleProblem: a Slack id given to two reviewers; a `slack:` block while no reviewer has a Slack id (nobody
            could decide from it); the former `slack.reviewers` map, refused with the `reviewers:` lines to write.
    """
    users: dict[str, str] = {}
    for name, reviewer in spec.reviewers.items():
        if reviewer.slack is None:
            continue
        if reviewer.slack in users:
            raise RuleProblem(
                ("reviewers", name, "slack"),
                f"Slack user {reviewer.slack} is already {users[reviewer.slack]!r}: one Slack user is one reviewer",
            )
        users[reviewer.slack] = name
    if spec.slack is None:
        return None
    if spec.slack.reviewers is not None:
        raise RuleProblem(("slack", "reviewers"), _moved(spec))
    if not users:
        raise RuleProblem(
            ("slack",),
            "no reviewer has a Slack id, so nobody can decide from Slack: give reviewers theirs under `reviewers:` "
            "(`sam: {roles: [support], slack: U024BE7LH}`) or remove `slack:`",
        )
    return Slack(signing_secret_env=spec.slack.signing_secret_env, bot_token_env=spec.slack.bot_token_env, users=users)


def _moved(spec: PolicySpec) -> str:
    """How to rewrite the former `slack.reviewers` map: the `reviewers:` entries that carry the same ids."""
    assert spec.slack is not None and spec.slack.reviewers is not None
    old: dict[str, Any] = spec.slack.reviewers
    lines: list[str] = []
    for name, reviewer in spec.reviewers.items():
        user = old.get(name)
        roles = ", ".join(reviewer.roles)
        lines.append(f"  {name}: " + (f"{{roles: [{roles}], slack: {user}}}" if user is not None else f"[{roles}]"))
    unknown = sorted(set(old) - set(spec.reviewers))
    tail = f"; {', '.join(map(repr, unknown))} must be added as reviewers first" if unknown else ""
    return (
        "Slack user ids moved into `reviewers:` (one per reviewer) and `slack.reviewers` is no longer read: remove "
        "it and write `reviewers:` as\n" + "\n".join(lines) + tail
    )


def _decode(data: bytes, source: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(
            file=source,
            line=line,
            field="",
            reason=f"the file is not UTF-8 (byte {exc.start}): save it as UTF-8",
        ) from None
    return text.removeprefix("\ufeff")


def _stem(source: str) -> str | None:
    name = FsPath(source).name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix) and not name.endswith(".cases" + suffix):
            return name[: -len(suffix)]
    return None


def _from_validation(exc: ValidationError, doc: YamlDocument, source: str) -> PolicyError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path: Path = tuple(first["loc"])
    ctx: dict[str, Any] = dict(first.get("ctx") or {})
    if first["type"] in ("unknown_key", "null_value"):
        path = (*path, str(ctx["key"]))
    reason = _reason(first, path)
    if len(errors) > 1:
        reason += f" ({len(errors) - 1} more problem(s) after this one)"
    return PolicyError(file=source, line=doc.line_of(path), field=format_path(path), reason=reason)


def _reason(error: ErrorDetails, path: Path) -> str:
    kind = error["type"]
    value: Any = error.get("input")
    if kind == "missing":
        return f"required key {path[-1]!r} is missing: add it"
    if kind in _KINDS:
        hint = ""
        if isinstance(value, str) and looks_numeric(value) and kind in ("int_type", "float_type"):
            hint = " (YAML reads it as text: write 50000 or 5.0e+4, not 5e4, and no quotes)"
        return f"expected {_KINDS[kind]}, got {json_type(value)}{hint}: fix the value"
    if kind == "value_error":
        ctx: dict[str, Any] = dict(error.get("ctx") or {})
        return str(ctx.get("error", error["msg"]))
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not allowed here: use letters, digits, '-', '_' or '.' (no spaces)"
    return error["msg"]
