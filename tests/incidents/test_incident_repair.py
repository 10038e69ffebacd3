"""Repair with a clean list over a real Guard and ledger (both backends): a sample, then the rest, each record's
compensation a guarded call keyed so it never runs twice, and the counts per system before and after."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_run_support import CONTACTS, BadRun

from guard.errors import GuardUsageError
from guard.incidents import RecordFilter, Scope
from guard.incidents.repair import counts_match, repair, repair_run_id
from guard.ledger import Ledger


def _judged(run: BadRun, tmp_path: Path) -> str:
    inc = run.book.open(Scope(source_event_ids=(run.event,)), title="sync wrote churned", opened_by="olga").incident_id
    wrong = run.wrong_contacts()
    for r in run.book.radius(inc).records:
        contact = r.external_ids.get("contact") or r.external_ids["enrollment"].removeprefix("wb_")
        run.book.tag(inc, RecordFilter(call_ids=(r.call_id,)), "wrong" if contact in wrong else "safe", by="rita")
    run.book.snapshot(inc, tmp_path / "snap.jsonl", by="olga")
    return inc


def test_a_repair_refuses_to_start_before_the_snapshot_is_taken(bad_run: BadRun) -> None:
    inc = bad_run.book.open(Scope(source_event_ids=(bad_run.event,)), title="t", opened_by="olga").incident_id
    with pytest.raises(GuardUsageError, match="snapshot"):
        repair(bad_run.guard, bad_run.book, inc, operator="olga", sample=2)


def test_the_rest_is_refused_until_a_sample_was_repaired(bad_run: BadRun, tmp_path: Path) -> None:
    inc = _judged(bad_run, tmp_path)
    with pytest.raises(GuardUsageError, match="sample first"):
        repair(bad_run.guard, bad_run.book, inc, operator="olga", rest=True)


def test_a_sample_then_the_rest_repairs_exactly_the_wrong_records_once_and_the_counts_match(
    bad_run: BadRun, tmp_path: Path
) -> None:
    inc = _judged(bad_run, tmp_path)
    wrong = bad_run.wrong_contacts()
    first = repair(bad_run.guard, bad_run.book, inc, operator="olga", sample=3)
    assert len(first.repaired) == 3 and first.left == 2 * len(wrong) - 3
    rest = repair(bad_run.guard, bad_run.book, inc, operator="olga", rest=True)
    assert len(rest.repaired) == 2 * len(wrong) - 3 and rest.left == 0
    assert counts_match(first.before, rest.after)
    assert rest.after == {
        "crm": {"completed": CONTACTS - len(wrong), "rolled_back": len(wrong)},
        "mail": {"completed": CONTACTS - len(wrong), "rolled_back": len(wrong)},
    }
    statuses = bad_run.tools.crm.statuses()
    assert all(statuses[c] == "customer" for c in wrong)
    assert all(statuses[c] == "churned" for c in set(statuses) - wrong)
    assert bad_run.tools.mail.enrolled() == CONTACTS - len(wrong)
    again = repair(bad_run.guard, bad_run.book, inc, operator="olga", rest=True)
    assert again.repaired == [] and bad_run.tools.crm.total_writes() == CONTACTS + len(wrong)
    calls = bad_run.guard.ledger.calls_of(repair_run_id(inc, "contacts"))
    assert len(calls) == 2 * len(wrong) and {c.idempotency_key for c in calls} == {
        f"repair:{c.compensates_call_id}" for c in calls
    }
    log = [n.text for n in bad_run.book.notes(inc) if n.kind == "action"]
    assert any(t.startswith("repair sample of 3: 3 repaired") for t in log)


def test_a_paused_team_holds_the_repair_before_anything_runs(ledger: Ledger, bad_run: BadRun, tmp_path: Path) -> None:
    inc = _judged(bad_run, tmp_path)
    ledger.pause("team", "contacts", reason="bad run", by="olga")
    with pytest.raises(GuardUsageError, match="is paused"):
        repair(bad_run.guard, bad_run.book, inc, operator="olga", sample=1)
    assert bad_run.tools.crm.total_writes() == CONTACTS
