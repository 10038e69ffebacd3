"""The notifier's cursor never moves past an event a transaction is still committing.

On PostgreSQL, writers of different runs commit side by side, so an event can take its id before a later one
and commit after it. A notifier pass in between must leave that id ahead of its cursor, or the event is never told.
"""

from __future__ import annotations

import threading
import time

import pytest

from guard.ledger import Ledger
from guard.ledger.pauses import insert_pause


def _pause_held_open(
    ledger: Ledger, committed: threading.Event, release: threading.Event, errors: list[BaseException]
) -> None:
    """Pause team `slow` in a transaction that stays open until `release`: its event has an id, not yet visible."""
    try:
        with ledger.conns.write() as cur:
            insert_pause(cur, "team", "slow", reason="held open", by="alice", team="slow", now=time.time())
            committed.set()  # (inserted: the id is taken)
            release.wait(30)
    except BaseException as exc:  # noqa: BLE001 (handed to the test thread, which asserts on it)
        errors.append(exc)


SKEW = 600.0  # a writer whose clock is ten minutes off


def _skewed(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This process's clock as a writer on a host whose clock is `seconds` off sees it (its events' `at`)."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


@pytest.mark.parametrize("skew", [0.0, -SKEW], ids=["one-clock", "later-writer-ten-minutes-behind"])
def test_an_event_that_commits_after_a_later_one_is_still_told(
    backend: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """The gap before the later event is judged by the database (is a transaction that could hold the missing id
    still open?), never by the later writer's `at`: stamped ten minutes in the past, it does not make the gap look
    old enough to pass, so the event behind it is told once it commits."""
    if backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: an id is committed before the next one is taken")
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    slow = threading.Thread(target=_pause_held_open, args=(ledger, inserted, release, errors))
    slow.start()
    assert inserted.wait(30)
    _skewed(monkeypatch, skew)
    ledger.pause("team", "fast", reason="committed first", by="bob", team="fast")  # a later id, visible now
    monkeypatch.undo()

    events, last = ledger.notice_events(ledger.notice_cursor())
    assert [e.detail.get("target") for e in events] == []  # the later pause waits behind the missing id
    ledger.move_notice_cursor(last)

    release.set()
    slow.join()
    assert errors == []
    events, last = ledger.notice_events(ledger.notice_cursor())
    assert [e.detail.get("target") for e in events] == ["slow", "fast"]  # both told, in id order, none lost
    ledger.move_notice_cursor(last)
    assert ledger.notice_events(ledger.notice_cursor())[0] == []


def test_a_gap_left_by_a_rolled_back_transaction_is_passed_at_once_though_later_events_are_stamped_ten_minutes_ahead(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing id that no open transaction can still commit is passed at once, whatever the later writer's clock
    says (ten minutes ahead used to make the gap look fresh for eleven minutes and hold every notice behind it)."""
    _skewed(monkeypatch, SKEW)
    with ledger.conns.write() as cur:  # an id then missing, as a rolled-back insert leaves it (before a later one)
        insert_pause(cur, "team", "gone", reason="rolled back", by="alice", team="gone", now=time.time())
        cur.execute("SELECT MAX(id) FROM events")
        (gone,) = cur.fetchone()
        insert_pause(cur, "team", "kept", reason="committed", by="alice", team="kept", now=time.time())
        cur.execute("DELETE FROM events WHERE id = ?", (gone,))
    ledger.pause("team", "after", reason="after the gap", by="bob", team="after")
    monkeypatch.undo()
    events, last = ledger.notice_events(ledger.notice_cursor())
    assert [e.detail.get("target") for e in events] == ["kept", "after"]  # passed; nothing lost
    ledger.move_notice_cursor(last)
    assert ledger.notice_events(ledger.notice_cursor())[0] == []  # and nothing told twice


def test_a_write_transaction_of_another_database_on_the_server_does_not_hold_back_notices_behind_a_gap(
    backend: str, ledger: Ledger, ledger_url: str
) -> None:
    """Only transactions that inserted events can commit a missing id: a long write transaction of another
    application on the same server (here another database, left open) does not keep the notifier from passing a
    gap a rolled-back insert left, and the notices behind it are told at once."""
    if backend == "sqlite":
        pytest.skip("SQLite has one writer at a time and no other database on its file")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(ledger_url)
    other = psycopg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname="postgres", autocommit=False
    )
    try:
        with other.cursor() as cur:  # a write transaction left open: it has a transaction id the server tracks
            cur.execute("CREATE TEMP TABLE batch (n int)")
            cur.execute("INSERT INTO batch VALUES (1)")
            cur.execute("SELECT pg_current_xact_id()")
        with ledger.conns.write() as cur:  # an id then missing, as a rolled-back insert leaves it
            insert_pause(cur, "team", "gone", reason="rolled back", by="alice", team="gone", now=time.time())
            cur.execute("SELECT MAX(id) FROM events")
            (gone,) = cur.fetchone()
            insert_pause(cur, "team", "kept", reason="committed", by="alice", team="kept", now=time.time())
            cur.execute("DELETE FROM events WHERE id = ?", (gone,))
        events, last = ledger.notice_events(ledger.notice_cursor())
        assert [e.detail.get("target") for e in events] == ["kept"]  # the gap passed although `other` is open
        ledger.move_notice_cursor(last)
    finally:
        other.rollback()
        other.close()
