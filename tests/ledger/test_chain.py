"""Each stream's chain is tamper-evident: an edited or deleted event is named, with its stream, by `verify_chain`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_support import AGENT, TEAM, request

from guard.ledger import Ledger
from guard.ledger.chain import event_hash


@pytest.fixture
def busy_ledger(ledger: Ledger) -> Ledger:
    """A ledger with a run holding a completed call, a denied call and a call awaiting approval."""
    ledger.open_run("r1", TEAM, actor=AGENT)
    done = ledger.offer(request("r1", key="k1"))
    ledger.complete(
        "r1",
        done.call_id,
        token=done.lease_token,
        result_json='{"ok":true}',
        external_ids={"contact": "c-1"},
        attempts=1,
        actor=AGENT,
    )
    ledger.offer(request("r1", verdict="deny"))
    ledger.offer(request("r1", verdict="approve", key="k2"))
    return ledger


def event_ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as raw:
        return [row[0] for row in raw.execute("SELECT id FROM events ORDER BY id")]


def test_a_fresh_ledger_with_calls_verifies_every_event(busy_ledger: Ledger, db_path: Path) -> None:
    report = busy_ledger.verify_chain()
    assert report.ok
    assert report.bad_id is None
    assert report.checked == len(event_ids(db_path)) >= 7  # a new call is one event, whatever its path


@pytest.mark.tampers
def test_editing_one_events_detail_names_exactly_that_row(busy_ledger: Ledger, db_path: Path) -> None:
    ids = event_ids(db_path)
    target = ids[len(ids) // 2]
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE events SET detail = ? WHERE id = ?", ('{"reason":"edited"}', target))
    report = busy_ledger.verify_chain()
    assert not report.ok
    assert report.bad_id == target
    assert [(f.kind, f.stream) for f in report.findings] == [("event_edited", "run:r1")]
    assert "edited" in (report.problem or "")


@pytest.mark.tampers
def test_deleting_a_middle_event_names_the_row_after_it(busy_ledger: Ledger, db_path: Path) -> None:
    ids = event_ids(db_path)
    victim = ids[len(ids) // 2]
    with sqlite3.connect(db_path) as raw:
        raw.execute("DELETE FROM events WHERE id = ?", (victim,))
    report = busy_ledger.verify_chain()
    assert not report.ok
    assert report.bad_id == ids[ids.index(victim) + 1]
    assert "deleted" in (report.problem or "")


@pytest.mark.tampers
def test_an_edit_with_a_recomputed_hash_is_named_at_the_following_row(busy_ledger: Ledger, db_path: Path) -> None:
    ids = event_ids(db_path)
    target = ids[2]
    with sqlite3.connect(db_path) as raw:
        (prev_hash,) = raw.execute(
            "SELECT hash FROM events WHERE id < ? ORDER BY id DESC LIMIT 1", (target,)
        ).fetchone()
        row: tuple[str | None, str | None, float, str, str, str | None, str] = raw.execute(
            "SELECT run_id, call_id, at, actor, entity, from_state, to_state FROM events WHERE id = ?", (target,)
        ).fetchone()
        claim: tuple[str | None, str | None, str | None] = raw.execute(
            "SELECT row_table, row_key, row_digest FROM events WHERE id = ?", (target,)
        ).fetchone()
        forged = event_hash(prev_hash, "run:r1", 3, *row, '{"forged":true}', *claim)
        raw.execute("UPDATE events SET detail = ?, hash = ? WHERE id = ?", ('{"forged":true}', forged, target))
    report = busy_ledger.verify_chain()
    assert not report.ok
    assert report.bad_id == ids[3]


@pytest.mark.parametrize(
    ("edit", "column"),
    [
        ("UPDATE events SET detail = x'ff00' WHERE id = ?", "detail"),
        ("UPDATE events SET actor = x'41' WHERE id = ?", "actor"),
        ("UPDATE events SET seq = 'third' WHERE id = ?", "seq"),
        ("UPDATE events SET stream = x'00' WHERE id = ?", "stream"),
    ],
    ids=["blob-detail", "blob-actor", "text-seq", "blob-stream"],
)
@pytest.mark.tampers
def test_an_event_holding_a_value_of_a_type_guard_never_writes_is_named_edited_not_a_crash(
    busy_ledger: Ledger, db_path: Path, edit: str, column: str
) -> None:
    """SQLite keeps a BLOB in any column: a hand edit that leaves one where Guard writes
    text (or text where it writes a sequence number) is an edited event, named by id and stream, and
    `guard ledger verify` exits 1 saying so (it raised TypeError with a traceback)."""
    ids = event_ids(db_path)
    target = ids[len(ids) // 2]
    with sqlite3.connect(db_path) as raw:
        raw.execute(edit, (target,))
    report = busy_ledger.verify_chain()
    assert not report.ok
    assert report.bad_id == target and report.findings[0].kind == "event_edited"
    if column in ("seq", "stream"):  # the walk cannot place such an event; the others no longer match their hash
        assert f"in its {column}, which Guard never writes there" in (report.problem or "")
    cli = subprocess.run(
        [sys.executable, "-m", "guard", "ledger", "verify", "--db", busy_ledger.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 1 and "TAMPERED" in cli.stdout and "Traceback" not in cli.stderr, cli.stderr


@pytest.mark.tampers
def test_a_claimed_row_holding_a_blob_where_guard_writes_text_is_named_edited_not_a_crash(
    busy_ledger: Ledger, db_path: Path
) -> None:
    """A covered row whose column holds a value JSON cannot hold (a BLOB) differs from what Guard wrote: `row_edited`
    naming the table, not a TypeError from the row's digest."""
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE calls SET tool = x'ff' WHERE state = 'completed'")
    report = busy_ledger.verify_chain()
    assert [(f.kind, f.table) for f in report.findings] == [("row_edited", "calls")]
