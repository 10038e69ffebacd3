"""Leases judged by the database clock on PostgreSQL: a worker whose own clock is minutes off neither takes over a
live call nor keeps writing after its lease ran out by the server's clock. The skewed worker's clock is this
process's `time.time`, moved; the database and its clock are real. On SQLite (one machine, one clock) leases are
judged by the worker's clock as before; the takeover that re-checks the lease in its own statement holds on both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard import Guard, LeaseLost
from guard.ledger import Beat, CallRecord, Ledger, ReadsPort
from guard.runtime.doors import ledger_of
from tests.crashed import left_started

SKEW = 600.0  # ten minutes
POLICY = """\
team: ops
rules:
  - {name: charge, tools: [billing.charge], class: compensable, on_failure: halt}
"""


@pytest.fixture
def recoverer(tmp_path: Path, ledger_url: str) -> Iterator[Guard]:
    """Another worker of the same ledger, with the tool's code, that recovers what it finds."""
    (tmp_path / "ops.yaml").write_text(POLICY)
    guard = Guard(policies=tmp_path, db=ledger_url, worker_id="recoverer", log_level="error")

    @guard.tool(name="billing.charge")
    def charge(amount: int) -> dict[str, int]:
        return {"amount": amount}

    try:
        yield guard
    finally:
        guard.close()


def _skew(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This process's clock, as a worker on a host whose clock is `seconds` off sees it."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def _call(ledger: ReadsPort, call_id: str) -> CallRecord:
    call = ledger.get_call(call_id)
    assert call is not None
    return call


def _postgres_only(backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite: every worker runs on the machine holding the file, with its one clock")


@pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["recoverer-ahead", "recoverer-behind"])
def test_a_recoverer_whose_clock_is_minutes_off_leaves_a_live_lease_to_its_worker(
    ledger: Ledger, backend: str, recoverer: Guard, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    _postgres_only(backend)
    call_id = left_started(ledger, "r-live", "billing.charge", "compensable", {"amount": 5}, ttl=60)
    _skew(monkeypatch, skew)
    report = recoverer.recover()
    assert report.claimed == 0
    assert [h.call_id for h in report.held] == [call_id]
    call = _call(ledger, call_id)
    assert (call.state, call.lease_owner, call.lease_token) == ("started", "dead", 1)


def test_a_worker_whose_clock_is_minutes_behind_writes_a_lease_that_runs_from_the_database_clock(
    ledger: Ledger, backend: str, recoverer: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(backend)
    _skew(monkeypatch, -SKEW)
    call_id = left_started(ledger, "r-behind", "billing.charge", "compensable", {"amount": 5}, ttl=60)
    monkeypatch.undo()
    lease = _call(ledger, call_id).lease_expires_at
    assert lease is not None
    assert abs(lease - (ledger.database_time() + 60)) < 10  # not ten minutes in the past
    report = recoverer.recover()
    assert report.claimed == 0
    assert _call(ledger, call_id).lease_owner == "dead"


def test_a_worker_whose_clock_is_behind_cannot_write_once_its_lease_ran_out_by_the_database_clock(
    backend: str, recoverer: Guard, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(backend)
    _skew(monkeypatch, -SKEW)  # to this worker its half-second lease still has ten minutes to go
    call_id = left_started(ledger, "r-late", "billing.charge", "compensable", {"amount": 5}, ttl=0.5)
    expires = _call(ledger, call_id).lease_expires_at
    assert expires is not None
    deadline = time.monotonic() + 10
    while ledger.database_time() <= expires:  # the server's clock passes the lease
        assert time.monotonic() < deadline, "the database clock never passed the lease"
    assert ledger.heartbeat(call_id, 1, 60).beat is Beat.RAN_OUT
    with pytest.raises(LeaseLost):
        ledger.record_attempt("r-late", call_id, 1, 2, "timeout", "dead")
    with pytest.raises(LeaseLost):
        ledger.complete("r-late", call_id, token=1, result_json="{}", external_ids={}, attempts=1, actor="dead")
    call = _call(ledger, call_id)
    assert (call.state, call.attempts, call.lease_token) == ("started", 0, 1)  # nothing of it written
    monkeypatch.undo()
    assert recoverer.recover().claimed == 1  # and any other worker may take it over now


def test_a_takeover_of_a_run_out_lease_checks_it_again_in_its_own_statement_and_leaves_a_live_one_alone(
    ledger: Ledger,
) -> None:
    call_id = left_started(ledger, "r-renewed", "billing.charge", "compensable", {"amount": 5}, ttl=60)
    seen = _call(ledger, call_id)  # a recoverer that judged this lease run out (a stale read, a skewed clock)
    assert ledger.claim(seen, worker="recoverer", ttl=30, actor="recovery", lease_ran_out=True) is None
    call = _call(ledger, call_id)
    assert (call.lease_owner, call.lease_token) == ("dead", 1)
    # Told the worker is dead, a takeover does not ask about the lease.
    assert ledger.claim(seen, worker="recoverer", ttl=30, actor="recovery") == 2


@pytest.mark.parametrize(
    ("worker_skew", "recoverer_skew"),
    [(0.0, SKEW), (-SKEW, 0.0)],
    ids=["recoverer-ahead", "worker-behind"],
)
def test_recover_stale_after_leaves_a_call_with_a_recent_sign_of_life_whatever_the_clocks_of_its_worker_and_recoverer(
    backend: str, recoverer: Guard, monkeypatch: pytest.MonkeyPatch, worker_skew: float, recoverer_skew: float
) -> None:
    """`stale_after` is judged by the database clock: the call's worker wrote its sign of life a moment ago by the
    server's clock, so neither a recoverer ten minutes ahead nor a worker ten minutes behind makes it look stale."""
    _postgres_only(backend)
    _skew(monkeypatch, worker_skew)
    call_id = left_started(ledger_of(recoverer), "r-recent", "billing.charge", "compensable", {"amount": 5}, ttl=60)
    assert ledger_of(recoverer).heartbeat(call_id, 1, 60)  # a sign of life from the worker, on its own clock
    monkeypatch.undo()
    _skew(monkeypatch, recoverer_skew)
    report = recoverer.recover(stale_after=60)
    assert report.claimed == 0
    assert [h.call_id for h in report.held] == [call_id]
    held = report.held[0]
    assert held.until is not None and abs(held.until - (ledger_of(recoverer).database_time() + 60)) < 10
    assert _call(ledger_of(recoverer), call_id).lease_owner == "dead"


def test_recover_stale_after_takes_over_a_call_silent_that_long_by_the_database_clock_from_a_recoverer_behind(
    backend: str, recoverer: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose last sign of life is `stale_after` seconds old by the server's clock is taken over, even by a
    recoverer whose own clock is ten minutes behind (to which the call would look ten minutes younger)."""
    _postgres_only(backend)
    ledger = ledger_of(recoverer)
    call_id = left_started(ledger, "r-silent", "billing.charge", "compensable", {"amount": 5})
    seen = _call(ledger, call_id).updated_at
    deadline = time.monotonic() + 10
    while ledger.database_time() <= seen + 0.5:  # the server's clock passes the call's last sign of life + 0.5 s
        assert time.monotonic() < deadline, "the database clock never passed the call's last sign of life"
    _skew(monkeypatch, -SKEW)
    report = recoverer.recover(stale_after=0.5)
    assert report.claimed == 1
    assert _call(ledger, call_id).lease_owner == "recoverer"
