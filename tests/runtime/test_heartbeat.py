"""The heartbeat logs "lease lost" only when another worker took the call over: a call this worker ended between
the heartbeat's read of its calls and its write (it completed while being renewed), or a lease that merely ran out
by the database clock with nobody taking it over, is not a lease another worker holds. A real takeover still logs
it. One pass of the heartbeat (`Heartbeat.beat`) on a real ledger, both backends."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from guard.ledger import Ledger
from guard.logs import make_logger
from guard.runtime.leases import Heartbeat
from tests.crashed import left_started

LOST = "lease lost: another worker took this call over"


class Beats:
    """A heartbeat of worker `dead` (the worker `left_started` names) on the test's ledger, its log lines kept."""

    def __init__(self, ledger: Ledger) -> None:
        self.out = io.StringIO()
        self.heartbeat = Heartbeat(ledger, 60.0, make_logger("info", stream=self.out, json=True))

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]


@pytest.fixture
def beats(ledger: Ledger) -> Iterator[Beats]:
    held = Beats(ledger)
    try:
        yield held
    finally:
        held.heartbeat.close()


def test_a_call_completed_while_its_heartbeat_renews_it_logs_no_lease_lost(ledger: Ledger, beats: Beats) -> None:
    call_id = left_started(ledger, "hb-done", "billing.charge", "compensable", {"amount": 5}, ttl=60)
    beats.heartbeat.hold(call_id, 1)  # the heartbeat reads its calls ...
    ledger.complete("hb-done", call_id, token=1, result_json="{}", external_ids={}, attempts=1, actor="dead")
    beats.heartbeat.beat()  # ... and writes after the call completed, before the worker let it go
    assert [line["event"] for line in beats.lines()] == []
    assert not beats.heartbeat.holds(call_id)  # nothing left to renew


def test_a_call_another_worker_took_over_is_logged_as_lease_lost_naming_that_worker(
    ledger: Ledger, beats: Beats
) -> None:
    call_id = left_started(ledger, "hb-taken", "billing.charge", "compensable", {"amount": 5}, ttl=60)
    beats.heartbeat.hold(call_id, 1)
    call = ledger.get_call(call_id)
    assert call is not None
    assert ledger.claim(call, worker="recoverer", ttl=30, actor="recovery") == 2
    beats.heartbeat.beat()
    lost = [line for line in beats.lines() if line["event"] == LOST]
    assert [(line["call_id"], line["taken_by"]) for line in lost] == [(call_id, "recoverer")]
    assert not beats.heartbeat.holds(call_id)


def test_a_lease_run_out_by_the_database_clock_that_nobody_took_over_is_not_logged_as_taken_over(
    backend: str, ledger: Ledger, beats: Beats
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite judges leases by the worker's clock and fences writes by token alone: nothing runs out")
    call_id = left_started(ledger, "hb-late", "billing.charge", "compensable", {"amount": 5}, ttl=0.5)
    expires = ledger.get_call(call_id)
    assert expires is not None and expires.lease_expires_at is not None
    deadline = time.monotonic() + 10
    while ledger.database_time() <= expires.lease_expires_at:  # the server's clock passes the lease
        assert time.monotonic() < deadline, "the database clock never passed the lease"
    beats.heartbeat.hold(call_id, 1)
    beats.heartbeat.beat()
    assert [(line["event"], line["call_id"]) for line in beats.lines()] == [
        ("lease ran out before its heartbeat renewed it: its writes are refused from now on", call_id)
    ]
