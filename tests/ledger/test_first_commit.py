"""A new call's first commit is one event naming its path (offered -> approved -> started for an auto-approved
call); ledgers written with one event per move still read, walk the transition table and verify."""

from __future__ import annotations

import dataclasses
import json

from ledger_support import AGENT, TEAM, call_history, history_problem, request

from guard.ledger import Ledger
from guard.ledger.digests import row_digest
from guard.ledger.moves import append_events
from guard.ledger.records import CallRecord


def test_an_auto_approved_call_records_one_event_naming_its_path_and_one_for_its_end(ledger: Ledger) -> None:
    ledger.open_run("r1", TEAM, actor=AGENT)
    offer = ledger.offer(request("r1", args={"n": 7}))
    ledger.complete(
        "r1", offer.call_id, token=offer.lease_token, result_json="null", external_ids={}, attempts=1, actor=AGENT
    )
    first, end = call_history(ledger, "r1", offer.call_id)
    assert (first.from_state, first.to_state, first.path) == (None, "started", ("offered", "approved", "started"))
    assert first.moves == ((None, "offered"), ("offered", "approved"), ("approved", "started"))
    detail = json.loads(first.detail)
    assert detail["args_hash"] == request("r1", args={"n": 7}).args_hash and detail["policy_version"]
    assert (end.from_state, end.to_state, end.path) == ("started", "completed", ("completed",))
    assert history_problem([first, end], "completed") is None
    assert ledger.verify_chain().ok


def test_a_denied_and_a_waiting_call_each_record_one_event_naming_their_path(ledger: Ledger) -> None:
    ledger.open_run("r1", TEAM, actor=AGENT)
    denied = ledger.offer(request("r1", verdict="deny"))
    waiting = ledger.offer(request("r1", verdict="approve", key="k2"))
    [d] = call_history(ledger, "r1", denied.call_id)
    [w] = call_history(ledger, "r1", waiting.call_id)
    assert d.path == ("offered", "denied") and json.loads(d.detail)["reason"] == "test deny"
    assert w.path == ("offered", "awaiting_approval")
    run = ledger.get_run("r1")
    assert run is not None
    story = ledger.run_story(run)  # what `guard runs show` and the reviewer page tell
    assert [e["path"] for e in story["events"] if e["call_id"] == waiting.call_id and e["entity"] == "call"] == [
        ["offered", "awaiting_approval"]
    ]


def test_a_call_recorded_with_one_event_per_move_reads_walks_and_verifies(ledger: Ledger) -> None:
    """A ledger written before the first commit was one event: offered, approved and started as three."""
    ledger.open_run("r1", TEAM, actor=AGENT)
    offer = ledger.offer(request("r1"))
    new_events = len(ledger.events_of("r1"))
    call = ledger.get_call(offer.call_id)
    assert call is not None
    with ledger.conns.write() as cur:  # a second call, as an older Guard recorded it
        values = tuple(dataclasses.replace(call, call_id="c-old", seq=2, idempotency_key=None).to_dict().values())
        cur.execute(
            f"INSERT INTO calls ({', '.join(CallRecord.columns())}) VALUES ({', '.join('?' * len(values))})", values
        )
        append_events(
            cur,
            [
                ("r1", "c-old", 9.0, AGENT, "call", None, "offered", '{"args_hash": "h"}'),
                ("r1", "c-old", 9.0, AGENT, "call", "offered", "approved", "{}"),
                ("r1", "c-old", 9.0, AGENT, "call", "approved", "started", "{}"),
            ],
            [("calls", "c-old", row_digest("calls", values))],
        )
    history = call_history(ledger, "r1", "c-old")
    assert [e.path for e in history] == [("offered",), ("approved",), ("started",)]
    assert [m for e in history for m in e.moves] == [
        (None, "offered"),
        ("offered", "approved"),
        ("approved", "started"),
    ]
    assert history_problem(history, "started") is None
    assert len(ledger.events_of("r1")) == new_events + 3
    assert ledger.verify_chain().ok
