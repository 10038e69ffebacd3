"""Which commits wait for the disk: all of them, except the `completed` of a repeat-safe call (by_class).

Observed at the database and the OS, on both backends. PostgreSQL: just before each write transaction of the
ledger commits, the witness asks the server, inside that transaction, whether its commit will wait for the disk
(`SHOW synchronous_commit` on, not off). SQLite commits without waiting (`synchronous=NORMAL`) and the ledger
flushes the log after the write lock goes (`guard.ledger.log_sync`): a commit waited for the disk when an
`fdatasync` of the ledger's log file was made after it and before its write returned. The witness also reads
which calls each transaction leaves `completed` that were not before. Nothing is inferred from the SQL the ledger
sends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from log_flushes import file_of, spied_flushes
from runtime_support import REPO

from guard import Guard
from guard.ledger import Ledger
from guard.ledger.backend import Backend, Connections
from guard.runtime.doors import ledger_of


def waits_for_disk(cur: Any, url: str) -> bool:
    """Whether a commit on this cursor's connection, now, waits until it is on disk by itself (asked of the
    database). Never on SQLite: its log is flushed after the commit (`flushes_log`)."""
    if url.startswith("sqlite"):
        cur.execute("PRAGMA synchronous")
        return int(cur.fetchone()[0]) >= 2  # FULL (2) or EXTRA (3); NORMAL (1) in WAL mode syncs at checkpoints
    cur.execute("SHOW synchronous_commit")
    return str(cur.fetchone()[0]) != "off"


class Commit:
    """One commit of a write transaction: whether it waited for the disk, and the calls it completed."""

    def __init__(self, durable: bool, completed: frozenset[str]) -> None:
        self.durable = durable
        self.completed = completed

    def __repr__(self) -> str:
        return f"Commit(durable={self.durable}, completed={sorted(self.completed)})"


class _WitnessCursor:
    def __init__(self, inner: Any, witness: CommitWitness, conn: Any) -> None:
        self.inner: Any = inner
        self._witness = witness
        self._conn = conn  # the backend's connection: out of its transaction once a last statement committed
        self._observed = False
        self._fold_durable: bool | None = None

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql == "COMMIT" and not self._observed:
            self._witness.observe(self.inner)
        if sql in ("COMMIT", "ROLLBACK"):
            self._observed = False
        return self.inner.execute(sql, params)

    def _commit_with_next(self) -> None:
        # PostgreSQL commits with the transaction's last statement, which may complete a call itself: whether the
        # commit waits for the disk is read before it, inside the transaction, and what it completed after it.
        self._fold_durable = waits_for_disk(self.inner, self._witness.url)
        self.inner.commit_with_next()

    def _extend_chain(self, *args: Any) -> Any:
        out = self.inner.extend_chain(*args)
        if self._fold_durable is not None and not self._conn.in_transaction:  # it carried the COMMIT
            self._witness.observe(self.inner, durable=self._fold_durable)
            self._observed = True
        self._fold_durable = None
        return out

    def __iter__(self) -> Iterator[Any]:
        return iter(self.inner)

    def __getattr__(self, name: str) -> Any:
        if name == "commit_with_next" and hasattr(self.inner, name):
            return self._commit_with_next
        if name == "extend_chain" and hasattr(self.inner, name):
            return self._extend_chain
        return getattr(self.inner, name)


class _WitnessConnection:
    def __init__(self, inner: Any, witness: CommitWitness) -> None:
        self.inner: Any = inner
        self._witness = witness

    def cursor(self) -> _WitnessCursor:
        return _WitnessCursor(self.inner.cursor(), self._witness, self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CommitWitness:
    """The ledger's own backend, observing every commit from inside its transaction (see the module docstring)."""

    def __init__(self, inner: Backend) -> None:
        self.inner: Any = inner
        self.url = inner.url
        self.lease_clock = inner.lease_clock
        self.clock_sql = inner.clock_sql
        self.drops_idle_connections = bool(getattr(inner, "drops_idle_connections", False))
        self.commits: list[Commit] = []
        self._completed: set[str] = set()

    def observe(self, cur: Any, durable: bool | None = None) -> None:
        """A commit: whether it waits for the disk (read in its transaction unless given) and the calls it
        completed (those completed now that were not at the commit before)."""
        durable = waits_for_disk(cur, self.url) if durable is None else durable
        cur.execute("SELECT call_id FROM calls WHERE state = 'completed'")
        completed = {row[0] for row in cur.fetchall()}
        self.commits.append(Commit(durable, frozenset(completed - self._completed)))
        self._completed |= completed

    def connect(self) -> _WitnessConnection:
        return _WitnessConnection(self.inner.connect(), self)

    def begin_write(self, cur: _WitnessCursor, durable: bool = True, lock: str | None = None) -> None:
        self.inner.begin_write(cur.inner, durable, lock)

    def begin_read(self, cur: _WitnessCursor) -> None:
        begin_read = getattr(self.inner, "begin_read", None)
        if begin_read is not None:
            begin_read(cur.inner)

    def end_write(self, cur: _WitnessCursor) -> bool:
        return bool(self.inner.end_write(cur.inner))

    def flush(self) -> None:
        if not self.url.startswith("sqlite"):
            self.inner.flush()
            return
        with spied_flushes() as flushed:
            self.inner.flush()
        if file_of(f"{self.inner.path}-wal") in flushed:  # the log, after the commit, before its write returned
            self.commits[-1].durable = True

    def is_unavailable(self, exc: BaseException) -> bool:
        return bool(self.inner.is_unavailable(exc))

    def clock(self, cur: _WitnessCursor) -> float:
        return float(self.inner.clock(cur.inner))

    def lock(self, cur: _WitnessCursor, name: str) -> None:
        self.inner.lock(cur.inner, name)

    def writers_now(self, cur: _WitnessCursor) -> tuple[str, ...] | None:
        mark = self.inner.writers_now(cur.inner)
        return None if mark is None else tuple(str(m) for m in mark)

    def writers_ended(self, cur: _WitnessCursor, mark: tuple[str, ...]) -> bool:
        return bool(self.inner.writers_ended(cur.inner, mark))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def witnessed(guard: Guard) -> CommitWitness:
    # Connections opened so far are not watched: a new pool opens them again through the witness. The witness
    # watches the Guard's own commits, so it goes into the Guard's own ledger (the runtime's, hence ledger_of).
    ledger = ledger_of(guard)
    witness = CommitWitness(ledger.conns.backend)
    ledger.conns.close()
    ledger.conns = Connections(witness)
    return witness


def run_three(guard: Guard) -> tuple[str, dict[str, str]]:
    """A read, an idempotent write and a compensable write, each completed; their call ids by class."""

    def find_contact(email: str) -> dict[str, Any]:
        return {"contact_id": None}

    def upsert_contact(email: str, name: str) -> dict[str, Any]:
        return {"contact_id": "c-1"}

    def create_invoice(customer_id: str, amount_cents: int) -> dict[str, Any]:
        return {"invoice_id": "inv-1"}

    find = guard.tool(find_contact, name="crm.find_contact")
    upsert = guard.tool(upsert_contact, name="crm.upsert_contact")
    invoice = guard.tool(create_invoice, name="billing.create_invoice")
    with guard.run("onboarding") as run:
        find(email="a@example.com")
        upsert(email="a@example.com", name="Ada")
        invoice(customer_id="c-1", amount_cents=1200)
    calls = {c.tool: c.call_id for c in guard.ledger.calls_of(run.run_id)}
    return run.run_id, {
        "read": calls["crm.find_contact"],
        "idempotent": calls["crm.upsert_contact"],
        "compensable": calls["billing.create_invoice"],
    }


def test_by_class_only_the_commit_completing_a_repeat_safe_call_returns_before_the_disk_has_it(
    make_guard: Callable[..., Guard],
) -> None:
    guard = make_guard(log_level="warning")
    witness = witnessed(guard)
    run_id, ids = run_three(guard)

    by_call = {call_id: c.durable for c in witness.commits for call_id in c.completed}
    assert by_call == {ids["read"]: False, ids["idempotent"]: False, ids["compensable"]: True}
    # Every other commit (each offer, the run's own moves) waited for the disk: the two lazy commits are exactly
    # the completions of the read and the idempotent call, one each.
    lazy = [c.completed for c in witness.commits if not c.durable]
    assert lazy == [frozenset({ids["read"]}), frozenset({ids["idempotent"]})], witness.commits
    assert len(witness.commits) > len(lazy) + 1  # the offers and the run's moves were seen too
    assert [c.state for c in guard.ledger.calls_of(run_id)] == ["completed"] * 3


def test_always_makes_every_commit_wait_for_the_disk(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard(log_level="warning", durability="always")
    witness = witnessed(guard)
    _, ids = run_three(guard)

    assert {call_id for c in witness.commits for call_id in c.completed} == set(ids.values())
    assert witness.commits and all(c.durable for c in witness.commits), witness.commits


def test_an_unknown_durability_is_a_usage_error(policy_dir: Path, db_path: Path) -> None:
    from guard import GuardUsageError

    with pytest.raises(GuardUsageError, match="durability must be 'by_class' or 'always'"):
        Guard(policies=policy_dir, db=str(db_path), durability="sometimes")  # type: ignore[arg-type]


def test_a_lazy_transaction_leaves_its_connection_waiting_for_the_disk_again(ledger: Ledger) -> None:
    witness = CommitWitness(ledger.conns.backend)
    ledger.conns.close()
    ledger.conns = Connections(witness)
    asked = (True, False, False, True, False, True, True)
    for durable in asked:
        with ledger.conns.write(durable):
            pass
    assert tuple(c.durable for c in witness.commits) == asked, witness.commits
    with pytest.raises(RuntimeError), ledger.conns.write(False):  # also when the block fails
        raise RuntimeError("boom")
    with ledger.conns.write():  # the pool's connections wait for the disk again
        pass
    assert witness.commits[-1].durable


_KILLED_AFTER_COMPLETION = """
import sys
from guard import Guard
guard = Guard(policies=sys.argv[1], db=sys.argv[2], log_level="error")
upsert = guard.tool(lambda email, name: {"contact_id": "c-77"}, name="crm.upsert_contact",
                    external_ids={"contact": "contact_id"})
with guard.run("onboarding", run_id="run-killed"):
    upsert(email="k@example.com", name="Kim")
    raise SystemExit("not reached: the process is killed right after the completion is committed")
"""


def test_a_process_killed_right_after_a_lazy_completion_loses_nothing(policy_dir: Path, db_path: Path) -> None:
    env = {**os.environ, "GUARD_CRASH_AT": "after_completed"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_COMPLETION, str(policy_dir), str(db_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr  # SIGKILL: no cleanup ran

    led = Ledger(f"sqlite:///{db_path}")
    try:
        (call,) = led.calls_of("run-killed")
        assert call.state == "completed"
        assert call.external_id_map == {"contact": "c-77"}
        assert led.verify_chain().ok
    finally:
        led.close()
