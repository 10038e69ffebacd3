"""The witness: a stand-in external service with its own SQLite store, which remembers every effect.

It is the other system of the kill tests (the billing provider, the CRM, the mail service). Its store is a
file of its own, separate from the ledger, so after a kill the two can be compared: every effect here has the
idempotency key the guarded call handed over, and every attempt that reached the service is recorded too.

- `apply(kind, key, payload)` is idempotent by key: a second apply with the same key returns the first
  effect's id and records a `duplicate_attempt` row, never a second effect.
- `send(kind, key, payload)` is deliberately NOT idempotent (an email provider without idempotency): every
  call inserts a new effect, so a duplicate is visible as two rows with one key.
- `undo(effect_id, key)` marks an effect undone (idempotent: undoing twice records `undo_repeat`).
- `lookup(key)` finds the effect of a key (what a reconcile check asks).

`perform(tool, ...)` runs one invocation under the script (`WITNESS_SCRIPT` JSON file, or `script=`): for
the n-th invocation of a tool, across processes, the n-th entry of its list says what happens:
`succeed`, `fail` (raise before any effect), `hang` (block until the release file appears or `seconds`
pass, then apply), `commit_then_hang` (apply, then block), `commit_then_drop` (apply, then raise
ConnectionError as if the response was lost). Entries past the end of the list succeed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from guard.testing import poll

__all__ = ["Attempt", "Effect", "Step", "Witness", "WitnessDown", "wait_for_file"]

Mode = Literal["succeed", "fail", "hang", "commit_then_hang", "commit_then_drop"]
MODES: frozenset[str] = frozenset({"succeed", "fail", "hang", "commit_then_hang", "commit_then_drop"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    effect_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    idempotent INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    created_at REAL NOT NULL,
    undone_at REAL,
    undone_key TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS effects_key ON effects (kind, key) WHERE idempotent = 1;
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tool TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT,
    outcome TEXT NOT NULL,
    effect_id TEXT,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tool TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
);
"""


class WitnessDown(ConnectionError):
    """The scripted service failure: raised before any effect (`fail`) or after one (`commit_then_drop`)."""


@dataclass(frozen=True, slots=True)
class Effect:
    """One effect the service holds: what, under which key, and whether it was undone."""

    effect_id: str
    kind: str
    key: str
    payload: dict[str, Any]
    idempotent: bool
    pid: int
    created_at: float
    undone_at: float | None
    undone_key: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request that reached the service (`applied`, `duplicate_attempt`, `failed`, `undone`, ...)."""

    id: int
    tool: str
    kind: str
    key: str | None
    outcome: str
    effect_id: str | None
    pid: int
    at: float


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted behaviour: the mode, and for hangs the release file and the longest wait."""

    mode: Mode = "succeed"
    release: str | None = None
    seconds: float = 30.0

    @staticmethod
    def parse(raw: object) -> Step:
        if isinstance(raw, str):
            if raw not in MODES:
                raise ValueError(f"unknown witness mode {raw!r}; use one of {sorted(MODES)}")
            return Step(cast(Mode, raw))
        if not isinstance(raw, dict):
            raise ValueError(f"a witness step is a mode or an object, not {raw!r}")  # noqa: TRY004 (a parse error)
        spec = cast(dict[str, Any], raw)
        mode = str(spec.get("mode", "succeed"))
        if mode not in MODES:
            raise ValueError(f"unknown witness mode {mode!r}; use one of {sorted(MODES)}")
        release = spec.get("release")
        return Step(cast(Mode, mode), None if release is None else str(release), float(spec.get("seconds", 30.0)))


def wait_for_file(path: Path, seconds: float) -> bool:
    """Block until `path` exists (True) or `seconds` pass (False): bounded polling of the file system."""
    try:
        return poll(path.exists, timeout=seconds, what=f"{path} to appear")
    except AssertionError:
        return False


class Witness:
    """The service's store at `path` (created on first use). Safe across threads and processes."""

    def __init__(self, path: Path | str, *, script: Mapping[str, list[object]] | None = None) -> None:
        self.path = Path(path)
        if script is None:
            env = os.environ.get("WITNESS_SCRIPT")
            script = cast(dict[str, list[object]], json.loads(Path(env).read_text())) if env else {}
        self.script: dict[str, list[Step]] = {tool: [Step.parse(s) for s in steps] for tool, steps in script.items()}
        db = sqlite3.connect(self.path, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _tx(self) -> Generator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers across processes are serialised)."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")  # an effect the service acknowledged survives a kill
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _record(
        self, db: sqlite3.Connection, tool: str, kind: str, key: str | None, outcome: str, effect_id: str | None
    ) -> None:
        db.execute(
            "INSERT INTO attempts (tool, kind, key, outcome, effect_id, pid, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tool, kind, key, outcome, effect_id, os.getpid(), time.time()),
        )

    # -- the service's API ------------------------------------------------------------------------------

    def apply(self, kind: str, key: str, payload: Mapping[str, Any], *, tool: str = "") -> str:
        """Create the effect of `key` once; a repeat returns the same effect id (recorded as a duplicate)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT effect_id FROM effects WHERE kind = ? AND key = ? AND idempotent = 1", (kind, key)
            ).fetchone()
            if row is not None:
                self._record(db, tool or kind, kind, key, "duplicate_attempt", row[0])
                return str(row[0])
            return self._insert(db, tool or kind, kind, key, payload, idempotent=True)

    def send(self, kind: str, key: str, payload: Mapping[str, Any], *, tool: str = "") -> str:
        """Create a new effect on every call, whatever the key (no idempotency)."""
        with self._tx() as db:
            return self._insert(db, tool or kind, kind, key, payload, idempotent=False)

    def _insert(
        self, db: sqlite3.Connection, tool: str, kind: str, key: str, payload: Mapping[str, Any], *, idempotent: bool
    ) -> str:
        effect_id = f"{kind}_{uuid.uuid4().hex[:12]}"
        db.execute(
            "INSERT INTO effects (effect_id, kind, key, payload, idempotent, pid, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (effect_id, kind, key, json.dumps(dict(payload), sort_keys=True), idempotent, os.getpid(), time.time()),
        )
        self._record(db, tool, kind, key, "applied", effect_id)
        return effect_id

    def undo(self, effect_id: str, key: str, *, tool: str = "undo") -> bool:
        """Undo an effect (idempotent); False when there is no such effect."""
        with self._tx() as db:
            row = db.execute("SELECT kind, undone_at FROM effects WHERE effect_id = ?", (effect_id,)).fetchone()
            if row is None:
                self._record(db, tool, "undo", key, "undo_missing", effect_id)
                return False
            if row[1] is not None:
                self._record(db, tool, "undo", key, "undo_repeat", effect_id)
                return True
            db.execute(
                "UPDATE effects SET undone_at = ?, undone_key = ? WHERE effect_id = ?", (time.time(), key, effect_id)
            )
            self._record(db, tool, "undo", key, "undone", effect_id)
            return True

    def lookup(self, key: str) -> Effect | None:
        """The (first) effect recorded under `key`, or None."""
        found = [e for e in self.effects() if e.key == key]
        return found[0] if found else None

    def read(self, kind: str, key: str, *, tool: str = "") -> None:
        """A read: changes nothing, recorded as an attempt so a test can count how often it ran."""
        with self._tx() as db:
            self._record(db, tool or kind, kind, key, "read", None)

    # -- scripted invocations ---------------------------------------------------------------------------

    def next_step(self, tool: str) -> Step:
        """Count this invocation of `tool` (across processes) and return its scripted step."""
        with self._tx() as db:
            db.execute("INSERT INTO invocations (tool, pid, at) VALUES (?, ?, ?)", (tool, os.getpid(), time.time()))
            n = int(db.execute("SELECT COUNT(*) FROM invocations WHERE tool = ?", (tool,)).fetchone()[0])
        steps = self.script.get(tool, [])
        return steps[n - 1] if n <= len(steps) else Step()

    def perform(self, tool: str, kind: str, key: str, payload: Mapping[str, Any], *, idempotent: bool = True) -> str:
        """One invocation of `tool` under its script; returns the effect id or raises WitnessDown."""
        step = self.next_step(tool)
        if step.mode == "fail":
            with self._tx() as db:
                self._record(db, tool, kind, key, "failed", None)
            raise WitnessDown(f"{tool}: scripted failure before any effect")
        if step.mode == "hang":
            self._hang(step)
        effect_id = (self.apply if idempotent else self.send)(kind, key, payload, tool=tool)
        if step.mode == "commit_then_hang":
            self._hang(step)
        if step.mode == "commit_then_drop":
            raise WitnessDown(f"{tool}: the effect {effect_id} was committed but the response was lost")
        return effect_id

    def perform_undo(self, tool: str, effect_id: str, key: str) -> bool:
        """One compensating invocation of `tool` under its script: undo `effect_id` (see `undo`)."""
        step = self.next_step(tool)
        if step.mode == "fail":
            with self._tx() as db:
                self._record(db, tool, "undo", key, "failed", effect_id)
            raise WitnessDown(f"{tool}: scripted failure before the undo")
        if step.mode == "hang":
            self._hang(step)
        done = self.undo(effect_id, key, tool=tool)
        if step.mode == "commit_then_hang":
            self._hang(step)
        if step.mode == "commit_then_drop":
            raise WitnessDown(f"{tool}: {effect_id} was undone but the response was lost")
        return done

    def _hang(self, step: Step) -> None:
        if step.release is None:
            time.sleep(step.seconds)  # a scripted slow service, not a synchronisation
        else:
            wait_for_file(Path(step.release), step.seconds)

    # -- reads for the invariants -----------------------------------------------------------------------

    def effects(self) -> list[Effect]:
        with self._read() as db:
            rows = db.execute(
                "SELECT effect_id, kind, key, payload, idempotent, pid, created_at, undone_at, "
                "undone_key FROM effects ORDER BY created_at"
            ).fetchall()
        return [Effect(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5], r[6], r[7], r[8]) for r in rows]

    def attempts(self) -> list[Attempt]:
        with self._read() as db:
            rows = db.execute(
                "SELECT id, tool, kind, key, outcome, effect_id, pid, at FROM attempts ORDER BY id"
            ).fetchall()
        return [Attempt(*r) for r in rows]

    def invocations(self, tool: str) -> int:
        with self._read() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM invocations WHERE tool = ?", (tool,)).fetchone()
        return int(n)

    @contextmanager
    def _read(self) -> Generator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0)
        try:
            yield db
        finally:
            db.close()
