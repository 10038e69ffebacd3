"""Streams: one chain per run (or reviewer, team's pauses, ...), heads kept in the writing transaction, and
ledgers from before streams migrated with their single chain verified once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from ledger_support import AGENT, TEAM, request

from guard.errors import LedgerNotReady
from guard.ledger import HEAD_REVISION, Ledger, Offer, RunClose, RunState, current_revision, upgrade
from guard.ledger import audit as audit_module
from guard.ledger import inflight as inflight_module
from guard.ledger import store as store_module
from guard.ledger.chain import GENESIS, legacy_hash
from guard.ledger.digests import COVERED
from guard.ledger.tables import metadata


def test_every_covered_tables_digest_reads_every_column_of_the_table() -> None:
    for spec in COVERED.values():
        assert set(spec.columns) == {c.name for c in metadata.tables[spec.table].columns}, spec.table


def test_writes_on_two_runs_extend_only_their_own_streams_and_sqlite_keeps_no_head_row_for_a_run(
    ledger: Ledger, db_path: Path
) -> None:
    ledger.open_run("a", TEAM, actor=AGENT)
    ledger.open_run("b", TEAM, actor=AGENT)
    with sqlite3.connect(db_path) as raw:
        before = raw.execute("SELECT id, stream, seq, hash FROM events WHERE stream = 'run:b'").fetchall()
    ledger.offer(request("a"))
    with sqlite3.connect(db_path) as raw:
        after = raw.execute("SELECT id, stream, seq, hash FROM events WHERE stream = 'run:b'").fetchall()
        lengths = dict(raw.execute("SELECT stream, max(seq) FROM events GROUP BY stream").fetchall())
        head_rows = raw.execute("SELECT count(*) FROM stream_heads WHERE stream LIKE 'run:%'").fetchone()[0]
    assert after == before and lengths == {"run:a": 2, "run:b": 1}  # the run opened, then the call offered
    assert head_rows == 0  # a run's head is its last event: one statement and one page fewer in every commit
    assert ledger.verify_chain().ok


class _WholeSecondClock:
    """The `time` module as the ledger's writers see it, but `time()` on a whole second."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        return 1_800_000_000.0


def test_a_run_opened_moved_and_closed_on_a_whole_second_verifies(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's claim is taken from its INSERT or UPDATE `... RETURNING`, not read back. SQLite returns a REAL column
    holding a whole number as an integer there, where a SELECT (and verify) gives a float: the claim must be the
    digest of the row as verify reads it, or a run written on a whole second is named edited."""
    monkeypatch.setattr(store_module, "time", _WholeSecondClock())
    monkeypatch.setattr(inflight_module, "time", _WholeSecondClock())
    run = ledger.open_run("a", TEAM, actor=AGENT)
    assert run.created_at == 1_800_000_000.0 and (run.last_call_id, run.call_count) == (None, 0)
    moved = ledger.move_run("a", RunClose(RunState.RUNNING, status_label="waiting on the CRM"), actor=AGENT)
    assert moved.status_label == "waiting on the CRM"
    closed, did = ledger.close_run("a", RunClose(RunState.COMPLETED), actor=AGENT, expect=frozenset({RunState.RUNNING}))
    assert did and closed.state == RunState.COMPLETED and closed.updated_at == 1_800_000_000.0
    assert closed == ledger.get_run("a") and type(closed.created_at) is float  # the run as a read gives it
    report = ledger.verify_chain()
    assert report.ok, report.findings


@pytest.mark.tampers
def test_an_event_appended_behind_guards_back_breaks_the_next_link_of_its_run(ledger: Ledger, db_path: Path) -> None:
    """With no head row, a run's next event chains onto the stream's last event as stored; an event inserted by
    hand with a made-up hash is then named by verify (the chain from it is broken or its own hash is wrong)."""
    ledger.open_run("a", TEAM, actor=AGENT)
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "INSERT INTO events (run_id, at, actor, entity, to_state, detail, hash, stream, seq) "
            "VALUES ('a', 1.0, 'x', 'run', 'running', '{}', ?, 'run:a', 2)",
            ("f" * 64,),
        )
    ledger.offer(request("a"))
    report = ledger.verify_chain()
    assert not report.ok
    assert any(f.kind == "event_edited" and f.stream == "run:a" and f.seq == 2 for f in report.findings)


@pytest.mark.tampers
def test_an_edited_call_row_is_named_with_its_run_stream_and_key(ledger: Ledger, db_path: Path) -> None:
    ledger.open_run("a", TEAM, actor=AGENT)
    offer = ledger.offer(request("a", args={"amount": 5}))
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE calls SET args_json = '{\"amount\":5000}' WHERE call_id = ?", (offer.call_id,))
    report = ledger.verify_chain()
    assert [(f.kind, f.stream, f.table, f.key) for f in report.findings] == [
        ("row_edited", "run:a", "calls", offer.call_id)
    ]


def _legacy_ledger(path: Path, *, break_at: int | None = None) -> str:
    """A ledger at 0006 with a run, a call and their events chained the old, single way."""
    url = f"sqlite:///{path}"
    upgrade(url, "0006_rate_windows")
    events = [
        ("r1", None, 1.0, "agent", "run", None, "running", "{}"),
        ("r1", "c1", 2.0, "agent", "call", None, "offered", "{}"),
        ("r1", "c1", 3.0, "agent", "call", "offered", "denied", '{"reason":"no"}'),
    ]
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO runs (run_id, team, state, requires_review, created_at, updated_at) "
            "VALUES ('r1', 'ops', 'running', 0, 1.0, 1.0)"
        )
        raw.execute(
            "INSERT INTO calls (call_id, run_id, seq, team, tool, policy_version, args_json, args_hash, state, "
            "attempts, external_ids, offered_at, updated_at, lease_token) VALUES ('c1', 'r1', 1, 'ops', "
            "'crm.x', 'v', '{}', 'h', 'denied', 0, '{}', 2.0, 3.0, 0)"
        )
        prev = GENESIS
        for i, ev in enumerate(events):
            prev = legacy_hash(prev, *ev)
            stored = "0" * 64 if i == break_at else prev
            raw.execute(
                "INSERT INTO events (run_id, call_id, at, actor, entity, from_state, to_state, detail, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*ev, stored),
            )
    return url


@pytest.mark.tampers
def test_an_old_ledgers_single_chain_becomes_the_legacy_stream_and_its_rows_get_a_baseline(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = _legacy_ledger(path)
    assert upgrade(url) == HEAD_REVISION  # through 0007_streams
    led = Ledger(url)
    try:
        report = led.verify_chain()
        assert report.ok, report.findings
        assert report.checked == 3 + 2 and report.rows == 2
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT stream, seq FROM events ORDER BY id LIMIT 3").fetchall() == [
                ("legacy", 1),
                ("legacy", 2),
                ("legacy", 3),
            ]
            raw.execute("UPDATE events SET actor = 'mallory' WHERE seq = 2 AND stream = 'legacy'")
            raw.execute("UPDATE calls SET state = 'completed'")
        kinds = {(f.kind, f.stream) for f in led.verify_chain().findings}
        assert kinds == {("event_edited", "legacy"), ("row_edited", "baseline")}
    finally:
        led.close()


def test_an_old_ledger_whose_chain_is_already_broken_is_not_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = _legacy_ledger(path, break_at=1)
    with pytest.raises(LedgerNotReady, match="event 2 does not follow"):
        upgrade(url)
    assert current_revision(url) == "0006_rate_windows"
    with sqlite3.connect(path) as raw:
        assert "stream" not in {row[1] for row in raw.execute("PRAGMA table_info(events)")}  # nothing half-done


@pytest.mark.tampers
def test_verify_reads_a_ledger_larger_than_its_batches_on_every_backend_and_names_the_one_edited_row(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many fetch batches (made small here): on PostgreSQL the rows come through server-side cursors batch by
    batch; every stream and row is still checked, and the one edited row is named."""
    monkeypatch.setattr(audit_module, "FETCH", 7)
    offers: list[Offer] = []
    for r in range(6):
        ledger.open_run(f"r{r}", TEAM, actor=AGENT)
        offers += [ledger.offer(request(f"r{r}", args={"n": i})) for i in range(8)]
    report = ledger.verify_chain()
    assert report.ok, report.findings
    assert report.checked >= 6 + 48 and report.streams >= 6 and report.rows >= 6 + 48
    victim = offers[29].call_id
    with ledger.conns.write() as cur:
        cur.execute("UPDATE calls SET args_json = ? WHERE call_id = ?", ('{"n":9999}', victim))
    assert [(f.kind, f.table, f.key) for f in ledger.verify_chain().findings] == [("row_edited", "calls", victim)]
