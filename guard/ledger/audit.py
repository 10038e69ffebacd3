"""`guard ledger verify`: every stream's chain, every covered row against its newest claim, and both against the
last seal. Streams: one pass over the events in id order and one merge per covered table; memory grows with the
number of streams (a few dozen bytes each), never with the number of events or rows.

What is checked (see guard.ledger.chain, guard.ledger.digests, guard.ledger.seals):
- each event follows from the one before it in its stream (hash and place), so an edited, deleted, inserted or
  reordered event is named, with its stream;
- each stream's walked head equals its `stream_heads` row (a cut tail or an appended event with an unchanged head),
  for the streams that keep one (all on PostgreSQL; all but the runs' on SQLite, guard.ledger.moves.heads_kept);
- each current row of a covered table has the digest its newest claim says (edited, inserted or deleted rows);
- with seals: each sealed stream still holds its sealed length, and its event at that place has the sealed hash
  (truncation, a dropped stream, history rewritten and re-hashed); events after the seal, and rows whose newest
  claim is after it, are listed as not yet sealed rather than called good.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from guard.ledger.chain import LEGACY, event_hash, legacy_hash
from guard.ledger.digests import ALL_COVERED, DELETED, Covered, row_digest, row_key
from guard.ledger.moves import heads_kept

__all__ = ["AuditReport", "Finding", "Unsealed", "audit"]

FETCH = 2000  # rows per fetch from every cursor of the audit: its memory is this, not the ledger's size
MAX_LISTED = 200  # findings and unsealed streams kept in the report; all are counted

_EVENTS = (
    "SELECT id, stream, seq, run_id, call_id, at, actor, entity, from_state, to_state, detail, row_table, "
    "row_key, row_digest, hash FROM events ORDER BY id"
)
# What Guard writes in each column of _EVENTS. SQLite keeps a value of any type in any column, so a hand edit
# can leave a BLOB or a number where text belongs: that event was edited, and the walk names it (it crashed).
_OPTIONAL = (str, type(None))
_EVENT_TYPES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("id", (int,)),
    ("stream", (str,)),
    ("seq", (int,)),
    ("run_id", _OPTIONAL),
    ("call_id", _OPTIONAL),
    ("at", (float, int)),
    ("actor", (str,)),
    ("entity", (str,)),
    ("from_state", _OPTIONAL),
    ("to_state", (str,)),
    ("detail", (str,)),
    ("row_table", _OPTIONAL),
    ("row_key", _OPTIONAL),
    ("row_digest", _OPTIONAL),
    ("hash", (str,)),
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that is not as Guard wrote it. `kind`: event_edited, event_missing, head_mismatch,
    stream_truncated, stream_dropped, sealed_history_changed, row_edited, row_inserted, row_deleted."""

    kind: str
    stream: str | None
    problem: str
    event_id: int | None = None
    seq: int | None = None
    table: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Unsealed:
    """Events of one stream after the last seal (`first`..`last` in its sequence): not yet sealed, not called good."""

    stream: str
    first: int
    last: int


@dataclass(slots=True)
class AuditReport:
    """What `audit` found. `ok` when nothing is wrong up to the seal (or at all, without one)."""

    checked: int = 0  # events walked
    rows: int = 0  # covered rows compared
    streams: int = 0
    findings: list[Finding] = field(default_factory=list[Finding])
    found: int = 0  # findings, counted past MAX_LISTED
    unsealed: list[Unsealed] = field(default_factory=list[Unsealed])
    unsealed_streams: int = 0
    unsealed_events: int = 0
    unsealed_rows: list[tuple[str, str, str]] = field(default_factory=list[tuple[str, str, str]])  # table, key, stream
    unsealed_row_count: int = 0
    sealed: bool = False  # checked against a seal

    @property
    def ok(self) -> bool:
        return self.found == 0

    @property
    def bad_id(self) -> int | None:
        """The first event named by a finding (the old chain report's field)."""
        return next((f.event_id for f in self.findings if f.event_id is not None), None)

    @property
    def problem(self) -> str | None:
        return self.findings[0].problem if self.findings else None

    def add(self, finding: Finding) -> None:
        self.found += 1
        if len(self.findings) < MAX_LISTED:
            self.findings.append(finding)


class _Stream:
    __slots__ = ("hash", "length", "next_point", "points", "seal_len")

    def __init__(self, points: list[tuple[int, str]] | None = None) -> None:
        self.length = 0
        self.hash = ""
        self.points = sorted(points or [])  # every seal's (length, head) of this stream
        self.next_point = 0
        self.seal_len = self.points[-1][0] if self.points else 0


def audit(conn: Any, sealed: dict[str, list[tuple[int, str]]] | None = None, *, postgres: bool = False) -> AuditReport:
    """Check the ledger open on `conn` (a DB-API connection) in one read snapshot; `sealed` maps each sealed
    stream to its (length, head) at every seal that named it (guard.ledger.seals.SealFile.checkpoints), so
    history sealed once is checked even when a later seal signed a rewritten head."""
    report = AuditReport(sealed=sealed is not None)
    cur = conn.cursor()
    # One snapshot for the chains and the rows: concurrent writers are not false alarms.
    cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if postgres else "BEGIN")
    if postgres:  # a long read, idle between its batches while they are checked: not a transaction left open
        cur.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
    try:
        streams = {name: _Stream(points) for name, points in (sealed or {}).items()}
        _walk(conn, streams, report)
        _heads(conn, streams, report, postgres)
        _seal_ends(streams, report, sealed is not None)
        claims_cur = _streaming(conn)
        # One pass over every claim, sorted once (no index: the hot path is spared one), table by table.
        collate = ' COLLATE "C"' if postgres else ""
        claims_cur.execute(
            "SELECT row_table, row_key, row_digest, stream, seq, id FROM events WHERE row_table IS "
            f"NOT NULL ORDER BY row_table{collate}, row_key{collate}, id"
        )
        claims = _Peek(_newest(_claims_of(_rows_of(claims_cur))))
        for table in sorted(ALL_COVERED):
            _rows(conn, ALL_COVERED[table], claims, streams, report, postgres)
        for claim in claims.rest():
            report.add(
                Finding(
                    "row_inserted",
                    claim[3],
                    f"event {claim[5]} claims a row of {claim[0]}, a table Guard does not record",
                    event_id=claim[5],
                    seq=claim[4],
                    table=claim[0],
                    key=claim[1],
                )
            )
        claims_cur.close()
    finally:
        cur.execute("ROLLBACK")
        cur.close()
    report.streams = len(streams)
    return report


def _streaming(conn: Any) -> Any:
    """A cursor whose rows arrive as they are fetched (PostgreSQL's default cursor would hold them all)."""
    return conn.streaming_cursor() if hasattr(conn, "streaming_cursor") else conn.cursor()


def _walk(conn: Any, streams: dict[str, _Stream], report: AuditReport) -> None:
    cur = _streaming(conn)
    cur.execute(_EVENTS)
    checked = 0
    for row in _rows_of(cur):
        id_, stream, seq, run_id, call_id, at, actor, entity, src, dst, detail, table, key, digest, hash_ = row
        checked += 1
        if type(seq) is not int or type(stream) is not str:
            _foreign_value(streams, row, report)
            continue
        st = streams.get(stream)
        if st is None:
            st = streams[stream] = _Stream()
        if seq != st.length + 1:
            report.add(
                Finding(
                    "event_missing",
                    stream,
                    f"event {id_} is number {seq} of stream {stream}, but "
                    f"{st.length} came before it: events were deleted, inserted or reordered",
                    event_id=id_,
                    seq=seq,
                    table=table,
                    key=key,
                )
            )
        elif stream == LEGACY:
            if legacy_hash(st.hash or "0" * 64, run_id, call_id, at, actor, entity, src, dst, detail) != hash_:
                report.add(
                    Finding(
                        "event_edited",
                        stream,
                        f"event {id_} (stream {stream}, #{seq}) does not follow "
                        "from the event before it: it or the one before it was edited",
                        event_id=id_,
                        seq=seq,
                    )
                )
        elif (
            _event_hash(
                st.hash or "0" * 64,
                stream,
                seq,
                run_id,
                call_id,
                at,
                actor,
                entity,
                src,
                dst,
                detail,
                table,
                key,
                digest,
            )
            != hash_
        ):
            report.add(
                Finding(
                    "event_edited",
                    stream,
                    f"event {id_} (stream {stream}, #{seq}) does not follow from "
                    "the event before it: it or the one before it was edited",
                    event_id=id_,
                    seq=seq,
                    table=table,
                    key=key,
                )
            )
        points = st.points
        while st.next_point < len(points) and points[st.next_point][0] <= seq:
            length, head = points[st.next_point]
            st.next_point += 1
            if length == seq and hash_ != head:
                report.add(
                    Finding(
                        "sealed_history_changed",
                        stream,
                        f"event {id_} (stream {stream}, #{seq}) is "
                        "not the event a seal signed: the stream's sealed history was rewritten",
                        event_id=id_,
                        seq=seq,
                    )
                )
        st.length, st.hash = seq, hash_ if type(hash_) is str else ""
    report.checked = checked
    cur.close()


def _event_hash(*fields: Any) -> str | None:
    """`event_hash` of the fields as stored; None (never a stored hash) when one holds a type `event_hash` cannot
    take (a BLOB or a number where Guard writes text): the event was edited, and the walk reports it so."""
    try:
        return event_hash(*fields)
    except (TypeError, AttributeError):
        return None


def _odd_column(row: tuple[Any, ...]) -> str:
    """The first column of an event row holding a type Guard never writes there (a bool is not a number here)."""
    for (name, types), value in zip(_EVENT_TYPES, row, strict=True):
        if isinstance(value, bool) or not isinstance(value, types):
            return name
    return "row"


def _foreign_value(streams: dict[str, _Stream], row: tuple[Any, ...], report: AuditReport) -> None:
    """Name an event whose stream or place is not of Guard's types as edited; the walk goes on from it as the next
    event of its stream, so the events after it are judged by their own hashes."""
    id_, stream, hash_ = row[0], row[1], row[-1]
    name = stream if type(stream) is str else repr(stream)
    st = streams.get(name)
    if st is None:
        st = streams[name] = _Stream()
    column = _odd_column(row)
    kind = type(row[[n for n, _ in _EVENT_TYPES].index(column)]).__name__ if column != "row" else "value"
    report.add(
        Finding(
            "event_edited",
            name,
            f"event {id_!r} (stream {name}) holds a {kind} in its {column}, which Guard never writes there: "
            "it was edited",
            event_id=id_ if type(id_) is int else None,
        )
    )
    st.length, st.hash = st.length + 1, hash_ if type(hash_) is str else ""


def _claims_of(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """The claims whose table and key are text, as Guard writes them. Any other was left by a hand edit of its
    event, which the walk names; it is left out here, since the merge orders claims by comparing them as text."""
    for claim in rows:
        if type(claim[0]) is str and type(claim[1]) is str:
            yield claim


def _rows_of(cur: Any) -> Iterator[tuple[Any, ...]]:
    while True:
        batch = cur.fetchmany(FETCH)
        if not batch:
            return
        yield from batch


def _heads(conn: Any, streams: dict[str, _Stream], report: AuditReport, postgres: bool) -> None:
    """Each stream's head row against the chain walked: a cut tail or an event appended without its head. On
    SQLite a run's stream has no head row (`heads_kept`): its cut tail is found by the rows the cut events
    claimed, and against the seals."""
    cur = conn.cursor()
    cur.execute("SELECT stream, length, head FROM stream_heads")
    named: set[str] = set()
    for stream, length, head in _rows_of(cur):
        named.add(stream)
        st = streams.get(stream)
        walked = (st.length, st.hash) if st is not None else (0, "")
        if walked != (length, head):
            report.add(
                Finding(
                    "head_mismatch",
                    stream,
                    f"stream {stream}: its head says {length} events, the "
                    f"chain has {walked[0]}: events were cut off its end or appended without Guard",
                    seq=length,
                )
            )
    for stream, st in streams.items():
        if stream not in named and st.length and heads_kept(stream, postgres=postgres):
            report.add(Finding("head_mismatch", stream, f"stream {stream} has {st.length} events but no head"))
    cur.close()


def _seal_ends(streams: dict[str, _Stream], report: AuditReport, sealed: bool) -> None:
    for stream, st in streams.items():
        if st.seal_len and st.length == 0:
            report.add(
                Finding(
                    "stream_dropped",
                    stream,
                    f"stream {stream} was sealed with {st.seal_len} events and is gone from the ledger",
                    seq=st.seal_len,
                )
            )
        elif st.seal_len > st.length:
            report.add(
                Finding(
                    "stream_truncated",
                    stream,
                    f"stream {stream} was sealed with {st.seal_len} events; "
                    f"the ledger holds {st.length}: its end was cut off",
                    seq=st.length + 1,
                )
            )
        elif st.length > st.seal_len:
            report.unsealed_streams += 1
            report.unsealed_events += st.length - st.seal_len
            if len(report.unsealed) < MAX_LISTED:
                report.unsealed.append(Unsealed(stream, st.seal_len + 1, st.length))
    if not sealed:
        report.unsealed_streams = 0  # without seals nothing is sealed: the count would only restate the ledger
        report.unsealed_events = 0
        report.unsealed = []


class _Peek:
    """The newest claims, consumed table by table."""

    def __init__(self, it: Iterator[tuple[Any, ...]]) -> None:
        self._it = it
        self._next = next(it, None)

    def take(self, table: str) -> tuple[Any, ...] | None:
        """The next claim of `table` as (key, digest, stream, seq, event id), or None past its last."""
        claim = self._next
        if claim is None or claim[0] != table:
            return None
        self._next = next(self._it, None)
        return claim[1:]

    def take_before(self, table: str) -> tuple[Any, ...] | None:
        """The next claim if its table sorts before `table` (a table Guard does not record), else None."""
        claim = self._next
        if claim is None or claim[0] >= table:
            return None
        self._next = next(self._it, None)
        return claim

    def rest(self) -> Iterator[tuple[Any, ...]]:
        while self._next is not None:
            claim, self._next = self._next, next(self._it, None)
            yield claim


def _rows(
    conn: Any, spec: Covered, claims: _Peek, streams: dict[str, _Stream], report: AuditReport, postgres: bool
) -> None:
    """Merge the table's rows (by key) with its claims (by key, newest last); both sides stream."""
    while (stray := claims.take_before(spec.table)) is not None:
        report.add(
            Finding(
                "row_inserted",
                stray[3],
                f"event {stray[5]} claims a row of {stray[0]}, a table Guard does not record",
                event_id=stray[5],
                seq=stray[4],
                table=stray[0],
                key=stray[1],
            )
        )
    rows = _streaming(conn)
    rows.execute(f"SELECT {', '.join(spec.columns)} FROM {spec.table} ORDER BY {spec.key_sql(postgres)}")
    pending = claims.take(spec.table)
    for values in _rows_of(rows):
        report.rows += 1
        key = row_key(spec.table, values)
        while pending is not None and pending[0] < key:
            _gone(spec, pending, report)
            pending = claims.take(spec.table)
        if pending is None or pending[0] != key:
            report.add(
                Finding(
                    "row_inserted",
                    None,
                    f"{spec.table} {key}: no event of Guard ever recorded this row",
                    table=spec.table,
                    key=key,
                )
            )
            continue
        _key, digest, stream, seq, event_id = pending
        pending = claims.take(spec.table)
        if digest == DELETED:
            report.add(
                Finding(
                    "row_inserted",
                    stream,
                    f"{spec.table} {key}: Guard recorded its deletion (event "
                    f"{event_id}, stream {stream}) but the row is there",
                    event_id=event_id,
                    seq=seq,
                    table=spec.table,
                    key=key,
                )
            )
        elif digest != _digest_of(spec.table, values):
            report.add(
                Finding(
                    "row_edited",
                    stream,
                    f"{spec.table} {key}: the row differs from what Guard wrote "
                    f"(event {event_id}, stream {stream} #{seq})",
                    event_id=event_id,
                    seq=seq,
                    table=spec.table,
                    key=key,
                )
            )
        elif report.sealed and seq > streams[stream].seal_len:
            report.unsealed_row_count += 1
            if len(report.unsealed_rows) < MAX_LISTED:
                report.unsealed_rows.append((spec.table, key, stream))
    while pending is not None:
        _gone(spec, pending, report)
        pending = claims.take(spec.table)
    rows.close()


def _digest_of(table: str, values: tuple[Any, ...]) -> str | None:
    """The row's digest; None (never a claimed digest) when a column holds a value no JSON can hold, such as a
    BLOB a hand edit left where Guard writes text: that row was edited."""
    try:
        return row_digest(table, values)
    except (TypeError, ValueError):
        return None


def _newest(claims: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """The last claim of each (table, key), from claims sorted by table, key, then id."""
    last: tuple[Any, ...] | None = None
    for claim in claims:
        if last is not None and (claim[0], claim[1]) != (last[0], last[1]):
            yield last
        last = claim
    if last is not None:
        yield last


def _gone(spec: Covered, claim: tuple[Any, ...], report: AuditReport) -> None:
    key, digest, stream, seq, event_id = claim
    if digest != DELETED:
        report.add(
            Finding(
                "row_deleted",
                stream,
                f"{spec.table} {key}: Guard wrote this row (event {event_id}, stream {stream} #{seq}) and it is gone",
                event_id=event_id,
                seq=seq,
                table=spec.table,
                key=key,
            )
        )
