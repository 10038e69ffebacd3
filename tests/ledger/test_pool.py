"""The ledger's connection pool on a database server: at most `size + overflow` connections per process, a thread
that finds them all in use waits up to the timeout and then gets `LedgerBusy` (nothing recorded), and connections
beyond `size` are closed when given back. A SQLite file's connections are not limited."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from guard import Guard, GuardUsageError, LedgerBusy, LedgerUnavailable
from guard.ledger import Ledger, PoolLimits
from guard.ledger.backend_postgres import conninfo
from guard.runtime.doors import ledger_of
from guard.testing import poll


def _server_connections(url: str) -> int:
    """How many connections the server counts to this ledger's database (other than the one asking)."""
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid != pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def pg_url(backend: str, ledger_url: str) -> str:
    if backend == "sqlite":
        pytest.skip("a SQLite file's connections are not pooled against a limit (see the SQLite test below)")
    return ledger_url


@pytest.fixture
def small(pg_url: str) -> Iterator[Ledger]:
    """A ledger whose pool holds two connections, one more under load, and waits 0.3 s for one."""
    led = Ledger(pg_url, pool=PoolLimits(size=2, overflow=1, timeout=0.3))
    try:
        yield led
    finally:
        led.close()


def test_a_thread_that_finds_every_connection_in_use_waits_the_timeout_then_gets_ledger_busy_and_records_nothing(
    pg_url: str, small: Ledger
) -> None:
    with ExitStack() as held:
        for _ in range(3):  # size 2 + overflow 1: three holders at once are served
            held.enter_context(small.conns.connection())
        assert _server_connections(pg_url) == 3
        started = time.monotonic()
        with pytest.raises(LedgerBusy) as caught:
            small.open_run("r-busy", "ops", actor="agent")
        waited = time.monotonic() - started
        assert waited >= 0.3
        assert (caught.value.size, caught.value.overflow, caught.value.timeout) == (2, 1, 0.3)
        assert isinstance(caught.value, LedgerUnavailable)  # callers that fail closed on an outage do here too
        assert "GUARD_DB_POOL_SIZE" in caught.value.message
        assert _server_connections(pg_url) == 3  # the fourth holder never opened a connection
    assert small.get_run("r-busy") is None  # nothing was recorded


def test_a_waiting_thread_gets_the_connection_another_gives_back(pg_url: str) -> None:
    led = Ledger(pg_url, pool=PoolLimits(size=1, overflow=0, timeout=30))
    try:
        done = threading.Event()
        errors: list[BaseException] = []

        def open_run() -> None:
            try:
                led.open_run("r-waited", "ops", actor="agent")
            except BaseException as exc:  # noqa: BLE001 (handed to the test thread, which asserts on it)
                errors.append(exc)
            done.set()

        with led.conns.connection():
            waiter = threading.Thread(target=open_run)
            waiter.start()
            assert not done.wait(0.2)  # blocked behind the one connection
        assert done.wait(30)
        waiter.join()
        assert errors == []
        run = led.get_run("r-waited")
        assert run is not None
        assert _server_connections(pg_url) == 1
    finally:
        led.close()


def test_connections_opened_beyond_the_size_are_closed_when_given_back(pg_url: str, small: Ledger) -> None:
    with ExitStack() as held:
        for _ in range(3):
            held.enter_context(small.conns.connection())
        assert _server_connections(pg_url) == 3
    assert poll(lambda: _server_connections(pg_url) == 2, what="the overflow connection closed")


def test_guard_takes_the_pool_from_its_settings_else_the_environment(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARD_DB_POOL_SIZE", "3")
    monkeypatch.setenv("GUARD_DB_POOL_OVERFLOW", "0")
    monkeypatch.setenv("GUARD_DB_POOL_TIMEOUT", "1.5")
    with Guard(db=pg_url, policies=str(tmp_path), log_level="error") as from_env:
        assert ledger_of(from_env).conns.limits == PoolLimits(size=3, overflow=0, timeout=1.5)
    with Guard(db=pg_url, policies=str(tmp_path), log_level="error", db_pool_size=5, db_pool_timeout=2) as given:
        assert ledger_of(given).conns.limits == PoolLimits(size=5, overflow=0, timeout=2.0)


@pytest.mark.parametrize(
    ("variable", "value"), [("GUARD_DB_POOL_SIZE", "ten"), ("GUARD_DB_POOL_SIZE", "0"), ("GUARD_DB_POOL_TIMEOUT", "-1")]
)
def test_a_pool_setting_that_is_not_a_usable_number_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(GuardUsageError, match=r"GUARD_DB_POOL_SIZE='ten'|size >= 1|timeout > 0"):
        PoolLimits.resolve()


def test_a_sqlite_ledger_opens_a_connection_for_every_thread_that_needs_one(backend: str, ledger: Ledger) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite case")
    assert ledger.conns.limits is None
    with ExitStack() as held:
        for _ in range(25):  # more than the default size + overflow
            held.enter_context(ledger.conns.connection())
