"""After a bad run: incidents over the ledger. Open one on a scope, read its blast radius, take the snapshot
before repair, judge each record, repair with a clean list, keep one shared note (issue 14).

Framework-free: the ledger for everything but repairs and the snapshot's inspect hooks, which need the agent's
Guard (its tools)."""

from guard.incidents.book import IncidentBook, RecordFilter, check_owner
from guard.incidents.radius import BlastRadius, Record, Systems, TeamSystems, blast_radius, system_of
from guard.incidents.snapshot import SnapshotCheck, SnapshotTaken, file_digest, take_snapshot, verify_snapshot
from guard.incidents.status import status_update
from guard.ledger.incident_scope import Scope
from guard.ledger.incidents import VERDICTS, IncidentRecord, Verdict

__all__ = [
    "VERDICTS",
    "BlastRadius",
    "IncidentBook",
    "IncidentRecord",
    "Record",
    "RecordFilter",
    "Scope",
    "SnapshotCheck",
    "SnapshotTaken",
    "Systems",
    "TeamSystems",
    "Verdict",
    "blast_radius",
    "check_owner",
    "file_digest",
    "status_update",
    "system_of",
    "take_snapshot",
    "verify_snapshot",
]
