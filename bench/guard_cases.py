# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""Guard-specific code of the benchmark (with seed.py, the only modules that import `guard`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
POLICY_DIR = BENCH_DIR / "policies"
POLICY_FILE = POLICY_DIR / "bench.yaml"


def otel_api() -> bool:
    """Whether the OpenTelemetry API is installed here (Guard then makes spans, recording or not)."""
    from guard.runtime.tracing import AVAILABLE

    return AVAILABLE


def otel_sdk() -> bool:
    """Whether the OpenTelemetry SDK can be imported here (for the traced row)."""
    import importlib.util

    try:
        return importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except (ImportError, ValueError):
        return False


def make_guarded_noop(
    db_path: str, log_level: str = "warning", durability: str = "by_class", traced: bool = False
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """(call, closer): call() makes one auto-approved guarded no-op tool call inside an open run.

    The run is opened here and closed by closer(), so the timed loop measures tool calls only
    (opening/closing a run is not in the per-call figure). `bench.noop` is class `idempotent` in
    bench/policies/bench.yaml, so every call is allowed without approval and recorded in the ledger.

    Each call passes a fresh argument `i`: Guard keys a non-read call by (run, tool, args hash), so
    calling an idempotent tool twice with the same arguments in one run is deduplicated (the second
    call only looks the first one up) — without `i` this would time the dedupe path, not a call.

    `traced`: the Guard records every call's spans with the OpenTelemetry SDK (a TracerProvider of its own, a
    SimpleSpanProcessor into an in-memory exporter: the cost of making and ending the spans, and of reading the
    call's ledger events for them, without any export I/O). Otherwise no provider is given: with the API installed
    and no SDK set up, spans are non-recording.
    """
    import contextvars
    import itertools

    from guard import Guard

    # log_level: Guard logs one `info` line per call to stderr by default; the headline rows run at
    # `warning` (Guard's mechanism, not a log sink's); the runner adds one row at `info` into /dev/null.
    # durability: `by_class` (Guard's default) commits the `completed` of this repeat-safe (idempotent) call
    # without waiting for the disk; `always` waits, as for a compensable or irreversible call.
    provider = None
    if traced:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    g = Guard(
        policies=str(POLICY_DIR),
        db=f"sqlite:///{db_path}",
        log_level=log_level,
        durability=durability,  # type: ignore[arg-type]
        tracer_provider=provider,
    )
    noop = g.tool(lambda i: None, name="bench.noop")
    run_cm = g.run(team="bench")
    # The run is entered in a context of its own, so several of these can be open at once in one thread
    # (the runner measures them in turns); each call enters that context (~0.3 µs).
    ctx = contextvars.copy_context()
    ctx.run(run_cm.__enter__)
    counter = itertools.count()

    def one() -> Any:
        return noop(i=next(counter))

    def call() -> Any:
        return ctx.run(one)

    def closer() -> None:
        try:
            ctx.run(run_cm.__exit__, None, None, None)
        finally:
            g.close()

    return call, closer


@contextlib.contextmanager
def without_tamper_evidence() -> Iterator[None]:
    """Inside this block Guard's ledger writes its events without the tamper evidence (#12): no row digests
    (claims), no chained hashes, no stream head moved; each event is a plain insert. Only for the bench's
    comparison row, so the evidence's own cost per call is measured side by side with the real thing; a ledger
    written this way does not verify."""

    def plain(cur: Any, events: list[Any], stream: str | None) -> list[Any]:
        out: list[Any] = []
        for run_id, call_id, at, actor, entity, src, dst, detail in events:
            out.extend((run_id, call_id, at, actor, entity, src, dst, detail, "", stream or "", 0, None, None, None))
        return out

    with _events_written_by(plain):
        yield


# The chain as it was before #12 (the commit before cfa1382): one hash chain over every event of the ledger, its
# head the newest event, the hash over these fields (guard.ledger.chain.event_hash of that time, copied here).
_GLOBAL_HEAD = "SELECT hash FROM events ORDER BY id DESC LIMIT 1"


def _global_hash(prev: str, run_id: Any, call_id: Any, at: float, actor: str, entity: str, src: Any, dst: str,
                 detail: str) -> str:  # fmt: skip
    import hashlib

    text = "\x1f".join((prev, run_id or "", call_id or "", repr(at), actor, entity, src or "", dst, detail))
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def with_global_chain() -> Iterator[None]:
    """Inside this block Guard's ledger keeps the audit trail as it did before #12: one global hash chain (each
    event hashes the newest event's hash and its own fields), no row digests, no stream heads. The bench's
    "before" row for #12's rule that the per-stream chains and the claims may add at most 10% to a call; a ledger
    written this way does not verify."""
    from guard.ledger.chain import GENESIS

    def chained(cur: Any, events: list[Any], stream: str | None) -> list[Any]:
        cur.execute(_GLOBAL_HEAD)
        row = cur.fetchone()
        prev = row[0] if row else GENESIS
        out: list[Any] = []
        for run_id, call_id, at, actor, entity, src, dst, detail in events:
            prev = _global_hash(prev, run_id, call_id, at, actor, entity, src, dst, detail)
            out.extend((run_id, call_id, at, actor, entity, src, dst, detail, prev, stream or "", 0, None, None, None))
        return out

    with _events_written_by(chained):
        yield


@contextlib.contextmanager
def _events_written_by(rows: Callable[[Any, list[Any], str | None], list[Any]]) -> Iterator[None]:
    """Guard's `append_events` replaced by one that inserts the rows `rows(cur, events, stream)` makes, and
    `row_digest` by a no-op, in every ledger module that holds them (found, not listed: a module added later is
    covered too); put back on leaving."""
    import sys

    from guard.ledger import digests, moves

    plain_insert = moves._insert  # pyright: ignore[reportPrivateUsage]

    def append(
        cur: Any,
        events: list[Any],
        claims: Any = (),
        *,
        stream: str | None = None,
        lead: Any = None,
        fresh: bool = False,  # no stream heads are kept here, new or not
    ) -> bool:
        if lead is not None:  # the row the events are about (a call's insert): written first, as the real one does
            cur.execute(*lead)
            if cur.rowcount != 1:
                return False
        if not events:
            return True
        plain_insert(cur, rows(cur, events, stream), len(events))
        return True

    real = {"append_events": moves.append_events, "row_digest": digests.row_digest}
    saved = [
        (m, name, fn)
        for key, m in list(sys.modules.items())
        if key.startswith("guard.ledger.") and m is not None
        for name, fn in real.items()
        if getattr(m, name, None) is fn
    ]
    for m, name, _ in saved:
        setattr(m, name, append if name == "append_events" else (lambda table, values: None))
    try:
        yield
    finally:
        for m, name, fn in saved:
            setattr(m, name, fn)


def make_classifier() -> Callable[[str, dict[str, Any]], Any]:
    """callable(tool, args): Guard's policy classification alone (no ledger, no run)."""
    from guard.policy import load_policy

    policy = load_policy(str(POLICY_FILE))
    # Sanity: same behaviour as the Edictum rule it is compared with (allow below, approval above 50000).
    small = str(getattr(policy.classify("billing.create_invoice", {"amount_cents": 100}), "verdict", "allow"))
    big = str(getattr(policy.classify("billing.create_invoice", {"amount_cents": 60_000}), "verdict", "approve"))
    if "allow" not in small.lower() or "approve" not in big.lower():
        raise RuntimeError(f"bench policy misbehaves: small={small} big={big}")
    return policy.classify


def make_sql_replay(work: str, n: int) -> tuple[Callable[[], Any], Callable[[], None], int]:
    """(call, closer, statements per call): the ledger SQL of one guarded no-op, replayed without Guard.

    Runs `n` guarded calls on a capture ledger, recording every statement and its parameters as the DB-API
    connection received them. Then each call() replays one call's statements, in order, on a fresh copy of
    the same schema through a plain sqlite3 connection set up as Guard's. What remains between this row and
    the guarded row is Guard's Python: classification, hashing, building rows, the chained hashes.
    """
    import shutil
    import sqlite3
    import threading

    from guard.ledger import backend as ledger_backend

    captured: list[tuple[str, tuple[Any, ...]]] = []
    caller = threading.get_ident()

    class Cursor(sqlite3.Cursor):
        def execute(self, sql, parameters=()):  # type: ignore[override]
            out = super().execute(sql, parameters)
            # Only what the call itself sent and SQLite took: not a background thread's writes (a lease's
            # heartbeat on a loaded machine), not a BEGIN IMMEDIATE that found the lock taken and was retried.
            if threading.get_ident() == caller:
                captured.append((sql, tuple(parameters)))
            return out

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        base = kwargs.pop("factory", sqlite3.Connection)  # Guard's own connection class, when it gives one

        class Connection(base):  # type: ignore[misc,valid-type]
            def cursor(self, factory=Cursor):  # type: ignore[override]
                return super().cursor(factory)

        return real_connect(*args, factory=Connection, **kwargs)

    capture_db = f"{work}/replay-capture.db"
    ledger_backend.sqlite3.connect = connect  # type: ignore[assignment]
    try:
        call, closer = make_guarded_noop(capture_db)
        groups: list[list[tuple[str, tuple[Any, ...]]]] = []
        try:
            for _ in range(n):
                captured.clear()
                call()
                groups.append(list(captured))
        finally:
            closer()
    finally:
        ledger_backend.sqlite3.connect = real_connect  # type: ignore[assignment]

    replay_db = f"{work}/replay.db"
    shutil.copyfile(capture_db, replay_db)
    fresh = sqlite3.connect(replay_db, isolation_level=None)
    fresh.execute("DELETE FROM events WHERE call_id IS NOT NULL")  # keep the run and its event
    fresh.execute("DELETE FROM calls")
    fresh.execute("VACUUM")
    fresh.close()
    conn = real_connect(replay_db, isolation_level=None, check_same_thread=False)
    for pragma in (
        "PRAGMA synchronous=FULL",
        "PRAGMA busy_timeout=5000",
        "PRAGMA foreign_keys=ON",
        "PRAGMA cache_size=-65536",
    ):
        conn.execute(pragma)
    execute = conn.cursor().execute
    plan = iter(groups)

    def replay() -> None:
        for sql, params in next(plan):
            execute(sql, params)

    return replay, conn.close, len(groups[-1])


def time_recovery(db_path: str, repeats: int = 5) -> list[int]:
    """Nanoseconds of `Guard.recover()` on the ledger at `db_path`, `repeats` times: what every worker pays when
    it starts (finding calls left started or in doubt, and cut-short sagas), with nothing to recover."""
    import time

    from guard import Guard

    g = Guard(policies=str(POLICY_DIR), db=f"sqlite:///{db_path}", log_level="warning", recover_on_start=False)
    try:
        g.tool(lambda i: None, name="bench.noop")
        out: list[int] = []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            report = g.recover()
            out.append(time.perf_counter_ns() - t0)
            if report.claimed or report.compensations:  # a seeded ledger has nothing left open
                raise RuntimeError(f"recovery found work in a seeded ledger: {report}")
        return out
    finally:
        g.close()
