"""The snapshot before repair: everything the ledger knows about each touched record, and its state now in the
other system where the tool declares how to read it back (`@tool.inspect`), written once as JSON lines.

The file: a header line (`{"snapshot": incident id, ...}`), one line per record (the call as recorded, redacted
arguments and result, external ids, every transition with who and when, the verdict at that moment, and
`current` from the inspect hook, or `current_error` when the hook failed), and a last line with the count. Its
SHA-256 is recorded in the ledger with the incident (a claimed row), so `verify_snapshot` shows later that the
evidence was not changed. A snapshot is taken once per incident, and never over an existing file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from guard.errors import GuardUsageError, IllegalTransition
from guard.incidents.radius import Systems, system_of
from guard.ledger.incidents import IncidentRecord, LedgerIncidents
from guard.ledger.records import CallRecord

__all__ = ["Inspector", "SnapshotCheck", "SnapshotTaken", "file_digest", "take_snapshot", "verify_snapshot"]

# Given a record as written in the snapshot, the record's state now in the other system (JSON), or None when the
# tool declares no way to read it back. May raise: the failure is written as `current_error`.
Inspector = Callable[[Mapping[str, Any]], Any]
_BATCH = 500


@dataclass(frozen=True, slots=True)
class SnapshotTaken:
    path: str
    digest: str
    records: int
    inspected: int
    seconds: float


@dataclass(frozen=True, slots=True)
class SnapshotCheck:
    ok: bool
    expected: str | None
    actual: str | None
    problem: str | None = None


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _line(out: IO[bytes], h: Any, data: Any) -> None:
    raw = (json.dumps(data, sort_keys=True, default=str, ensure_ascii=True) + "\n").encode()
    h.update(raw)
    out.write(raw)


def _records(
    book: LedgerIncidents, incident: IncidentRecord, systems: Systems, inspect: Inspector | None
) -> Iterator[dict[str, Any]]:
    verdicts = book.verdicts(incident.incident_id)
    batch: list[CallRecord] = []
    rows = book.full_calls_in_scope(incident.scope, CallRecord.columns())

    def flush() -> Iterator[dict[str, Any]]:
        events = book.call_events([c.run_id for c in batch])
        for call in batch:
            yield _record(call, events.get(call.call_id, []), verdicts.get(call.call_id), systems, inspect)
        batch.clear()

    for row in rows:
        batch.append(CallRecord.from_row(row))
        if len(batch) >= _BATCH:
            yield from flush()
    if batch:
        yield from flush()


def _record(
    call: CallRecord,
    events: list[dict[str, Any]],
    verdict: Mapping[str, Any] | None,
    systems: Systems,
    inspect: Inspector | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "call_id": call.call_id,
        "run_id": call.run_id,
        "seq": call.seq,
        "team": call.team,
        "tool": call.tool,
        "system": system_of(call.tool, systems, call.team),
        "side_effect": call.side_effect,
        "rule": call.rule,
        "policy_version": call.policy_version,
        "args": json.loads(call.args_json),
        "args_hash": call.args_hash,
        "idempotency_key": call.offered_key,
        "state": call.state,
        "attempts": call.attempts,
        "external_ids": call.external_id_map,
        "result": call.result,
        "error": call.error,
        "reason": call.reason,
        "requested_by": call.requested_by,
        "offered_at": call.offered_at,
        "approved_at": call.approved_at,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "events": events,
        "verdict": dict(verdict) if verdict is not None else None,
    }
    if inspect is not None:
        try:
            current = inspect(out)
        except Exception as exc:  # noqa: BLE001 (the hook is the team's code; its failure is evidence too)
            out["current_error"] = f"{type(exc).__name__}: {exc}"
        else:
            if current is not None:
                out["current"] = current
    return out


def take_snapshot(
    book: LedgerIncidents,
    incident_id: str,
    path: str | Path,
    *,
    by: str,
    systems: Systems = None,
    inspect: Inspector | None = None,
) -> SnapshotTaken:
    """Write the snapshot of the incident's records to `path` (a new file) and record its digest in the ledger.

    Raises:
        GuardUsageError: no such incident, or `path` exists already (a snapshot is never overwritten).
        IllegalTransition: the incident is closed or has its snapshot already.
    """
    t0 = time.perf_counter()
    incident = book.get_incident(incident_id)
    if incident is None:
        raise GuardUsageError(f"no incident {incident_id}; list them with `guard incident list`")
    if incident.state != "open" or incident.snapshot_digest is not None:
        raise IllegalTransition(
            f"incident {incident_id} is {incident.state}"
            + (f" and has its snapshot already ({incident.snapshot_path})" if incident.snapshot_digest else ""),
            entity="incident",
            id=incident_id,
            from_state=incident.state,
            to_state="snapshot",
        )
    target = Path(path)
    h = hashlib.sha256()
    count = inspected = 0
    try:
        out = open(target, "xb")  # noqa: SIM115 - closed below; `x`: never over an existing file
    except FileExistsError as exc:
        raise GuardUsageError(f"{target} exists: a snapshot is written to a new file, never over one") from exc
    try:
        with out:
            _line(
                out,
                h,
                {
                    "snapshot": incident.incident_id,
                    "title": incident.title,
                    "scope": json.loads(incident.scope_json),
                    "taken_by": by,
                    "taken_at": time.time(),
                    "format": 1,
                },
            )
            for rec in _records(book, incident, systems, inspect):
                _line(out, h, rec)
                count += 1
                inspected += "current" in rec
            _line(out, h, {"end": incident.incident_id, "records": count})
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        book.record_snapshot(incident_id, path=str(target.resolve()), digest=digest, records=count, by=by)
    except BaseException:
        target.unlink(missing_ok=True)  # nothing recorded: no evidence file claims to be this incident's
        raise
    return SnapshotTaken(str(target.resolve()), digest, count, inspected, time.perf_counter() - t0)


def verify_snapshot(book: LedgerIncidents, incident_id: str, path: str | Path | None = None) -> SnapshotCheck:
    """Whether the snapshot file (the recorded path, or `path`) still has the digest recorded in the ledger."""
    incident = book.get_incident(incident_id)
    if incident is None:
        raise GuardUsageError(f"no incident {incident_id}; list them with `guard incident list`")
    if incident.snapshot_digest is None:
        return SnapshotCheck(False, None, None, "no snapshot was taken for this incident")
    where = Path(path or incident.snapshot_path or "")
    if not where.is_file():
        return SnapshotCheck(False, incident.snapshot_digest, None, f"{where} is missing")
    actual = file_digest(where)
    ok = actual == incident.snapshot_digest
    return SnapshotCheck(
        ok, incident.snapshot_digest, actual, None if ok else f"{where} was changed since the snapshot was taken"
    )
