"""Incidents over a real ledger (both backends): the scope, the three times, the blast radius, the snapshot, the
verdicts with their history, the shared log, and the tamper-evidence of every incident row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bad_run_support import CONTACTS, BadRun

from guard import Guard, ReconcileContext
from guard.errors import GuardUsageError, IllegalTransition
from guard.incidents import IncidentBook, RecordFilter, Scope, status_update
from guard.incidents.radius import TeamSystems, system_of
from guard.incidents.repair import inspector_for
from guard.incidents.snapshot import Inspector
from guard.ledger import Ledger
from guard.policy import PolicySet
from guard.runtime.doors import ledger_of


def _open(run: BadRun) -> str:
    return run.book.open(
        Scope(source_event_ids=(run.event,)), title="sync wrote churned", opened_by="olga", owner="rita"
    ).incident_id


def test_an_incident_records_who_opened_it_its_owner_team_and_the_three_times(bad_run: BadRun) -> None:
    inc = bad_run.book.get(_open(bad_run))
    calls = bad_run.guard.ledger.calls_of("contacts:sync-1")
    run = bad_run.guard.ledger.get_run("contacts:sync-1")
    assert run is not None
    assert (inc.opened_by, inc.owner, inc.team, inc.state) == ("olga", "rita", "contacts", "open")
    assert inc.started_at == run.created_at
    assert inc.last_changed_at == max(c.ended_at or 0.0 for c in calls)
    assert inc.paused_at is None  # nothing paused the sync yet


def test_the_paused_time_is_the_first_pause_covering_the_scope_after_it_started(
    ledger: Ledger, bad_run: BadRun
) -> None:
    ledger.pause("tool", "crm.set_*", reason="wrong statuses", by="olga", team="contacts")
    inc = bad_run.book.get(_open(bad_run))
    pause = ledger.pause_events("contacts")[0]
    assert inc.paused_at == pause.at
    log = bad_run.book.log(inc.incident_id)
    assert any(e["author"] == "olga" and "paused tool crm.set_*" in e["text"] for e in log)


def test_the_blast_radius_counts_every_changing_call_by_system_and_state_with_its_external_ids(bad_run: BadRun) -> None:
    radius = bad_run.book.radius(_open(bad_run))
    assert radius.by_system_state() == {"crm": {"completed": CONTACTS}, "mail": {"completed": CONTACTS}}
    assert (
        radius.summary() == f"{2 * CONTACTS} records changed in 2 systems: 0 wrong, 0 safe, 0 unclear, "
        f"{2 * CONTACTS} not yet judged"
    )
    crm = [r for r in radius.records if r.system == "crm"]
    assert sorted(r.external_ids["contact"] for r in crm) == sorted(bad_run.tools.billing.plans())
    data = json.loads(json.dumps(radius.to_json()))
    assert data["records_changed"] == 2 * CONTACTS and data["verdicts"]["not_judged"] == 2 * CONTACTS
    assert radius.to_csv().count("\n") == 2 * CONTACTS + 1


def test_a_window_scope_takes_the_tool_globs_and_times_it_names(bad_run: BadRun) -> None:
    calls = bad_run.guard.ledger.calls_of("contacts:sync-1")
    radius = bad_run.book.radius(
        bad_run.book.open(
            Scope(team="contacts", tools=("mail.*",), since=calls[0].offered_at, until=calls[-1].offered_at),
            title="win-back enrollments",
            opened_by="olga",
        ).incident_id
    )
    assert {r.system for r in radius.records} == {"mail"} and len(radius.records) == CONTACTS


def test_a_scope_that_names_nothing_or_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(GuardUsageError):
        Scope()
    with pytest.raises(GuardUsageError):
        Scope(team="contacts", since=2.0, until=1.0)


def test_systems_come_from_the_tool_prefix_unless_named_by_glob() -> None:
    assert system_of("crm.set_contact_status") == "crm"
    assert system_of("billing.create_invoice", {"billing.*": "stripe"}) == "stripe"


def test_each_record_is_in_the_system_its_own_teams_policy_names_and_else_in_its_prefix(tmp_path: Path) -> None:
    (tmp_path / "sales.yaml").write_text(
        'team: sales\nrules:\n  - {name: crm, tools: ["crm.*"], class: idempotent}\n'
        'systems:\n  salesforce: {tools: ["crm.*"]}\n'
    )
    (tmp_path / "support.yaml").write_text(
        'team: support\nrules:\n  - {name: crm, tools: ["crm.*"], class: idempotent}\n'
        'systems:\n  hubspot: {tools: ["crm.*"]}\n'
    )
    systems = TeamSystems(PolicySet.load_dir(tmp_path).policies)
    assert system_of("crm.update", systems, "sales") == "salesforce"
    assert system_of("crm.update", systems, "support") == "hubspot"
    assert system_of("mail.send", systems, "sales") == "mail"  # no system of its team names it
    assert system_of("crm.update", systems, "nobody") == "crm"  # a team without a policy here


def test_verdicts_by_filter_update_the_totals_and_a_changed_verdict_keeps_its_history(bad_run: BadRun) -> None:
    inc = _open(bad_run)
    wrong = bad_run.wrong_contacts()
    radius = bad_run.book.radius(inc)
    ids = tuple(r.call_id for r in radius.records if r.external_ids.get("contact") in wrong)
    assert bad_run.book.tag(inc, RecordFilter(call_ids=ids), "wrong", by="rita", note="paid plan") == (9, 9)
    assert bad_run.book.tag(inc, RecordFilter(system="crm", verdict="none"), "safe", by="tess") == (3, 3)
    assert bad_run.book.tag(inc, RecordFilter(system="crm", verdict="none"), "safe", by="tess") == (0, 0)
    first = ids[0]
    assert bad_run.book.tag(inc, RecordFilter(call_ids=(first,)), "unclear", by="tess", note="check") == (1, 1)
    totals = bad_run.book.radius(inc).verdict_totals()
    assert totals == {"safe": 3, "wrong": 8, "unclear": 1, "not_judged": CONTACTS}
    history = bad_run.book.history(inc, first)
    assert [(h["verdict"], h["by"], h["note"]) for h in history] == [
        ("wrong", "rita", "paid plan"),
        ("unclear", "tess", "check"),
    ]


def test_tagging_refuses_an_empty_filter_and_records_outside_the_incident(bad_run: BadRun) -> None:
    inc = _open(bad_run)
    with pytest.raises(GuardUsageError):
        bad_run.book.tag(inc, RecordFilter(), "wrong", by="rita")
    with pytest.raises(GuardUsageError, match="not records of incident"):
        bad_run.book.tag(inc, RecordFilter(call_ids=("call_elsewhere",)), "wrong", by="rita")


def test_the_snapshot_is_written_once_with_the_records_current_state_and_its_digest_checks_the_file(
    bad_run: BadRun, tmp_path: Path
) -> None:
    inc = _open(bad_run)
    path = tmp_path / "snap.jsonl"
    taken = bad_run.book.snapshot(inc, path, by="olga", inspect=_inspector(bad_run))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert taken.records == 2 * CONTACTS == len(lines) - 2 and taken.inspected == 2 * CONTACTS
    crm = next(x for x in lines[1:-1] if x["tool"] == "crm.set_contact_status")
    assert crm["current"]["status"] == "churned" and crm["result"]["status"] == "churned"
    assert [e["to"] for e in crm["events"]][-1] == "completed"
    assert bad_run.book.verify(inc).ok
    with pytest.raises(IllegalTransition):
        bad_run.book.snapshot(inc, tmp_path / "again.jsonl", by="olga")
    path.write_text(path.read_text().replace("churned", "customer", 1))
    check = bad_run.book.verify(inc)
    assert not check.ok and check.problem is not None and "changed" in check.problem


def test_a_snapshot_is_never_written_over_an_existing_file(bad_run: BadRun, tmp_path: Path) -> None:
    inc = _open(bad_run)
    path = tmp_path / "taken.jsonl"
    path.write_text("someone else's file\n")
    with pytest.raises(GuardUsageError, match="exists"):
        bad_run.book.snapshot(inc, path, by="olga")
    assert path.read_text() == "someone else's file\n" and bad_run.book.get(inc).snapshot_digest is None


@pytest.mark.tampers
def test_every_incident_row_is_claimed_so_an_edited_verdict_is_found_by_verify(
    bad_run: BadRun, ledger_url: str
) -> None:
    inc = _open(bad_run)
    radius = bad_run.book.radius(inc)
    bad_run.book.tag(inc, RecordFilter(call_ids=(radius.records[0].call_id,)), "safe", by="tess")
    bad_run.book.note(inc, "CRM team looked at three records", by="rita")
    bad_run.book.close(inc, "repaired by hand", by="olga")
    assert bad_run.guard.ledger.verify_chain().ok
    led = Ledger(ledger_url)
    try:
        with led.conns.write() as cur:
            cur.execute("UPDATE incident_verdicts SET verdict = 'wrong'")
        findings = led.verify_chain().findings
    finally:
        led.close()
    assert [(f.kind, f.table) for f in findings] == [("row_edited", "incident_verdicts")]


def test_a_closed_incident_takes_no_more_verdicts_or_notes(bad_run: BadRun) -> None:
    inc = _open(bad_run)
    bad_run.book.close(inc, "false alarm", by="olga")
    with pytest.raises(IllegalTransition):
        bad_run.book.note(inc, "one more thing", by="rita")
    with pytest.raises(IllegalTransition):
        bad_run.book.tag(inc, RecordFilter(system="crm"), "safe", by="rita")


def test_the_status_update_says_what_happened_what_looks_wrong_what_looks_normal_and_the_next_update(
    bad_run: BadRun,
) -> None:
    inc = _open(bad_run)
    bad_run.book.tag(inc, RecordFilter(system="mail"), "wrong", by="rita")
    text = "\n".join(status_update(bad_run.book, inc))
    assert "Looks wrong: 12 in mail." in text
    assert "Still looks normal: nothing judged safe yet." in text
    assert "Next update: " in text and "Snapshot: not taken yet" in text


def _inspector(run: BadRun) -> Inspector:
    return inspector_for(run.guard)


def test_every_incident_tables_digest_reads_every_column_of_the_table() -> None:
    from guard.ledger.digests import COVERED_LATER
    from guard.ledger.tables import metadata

    assert set(COVERED_LATER) == {"incidents", "incident_verdicts", "incident_notes", "drills"}
    for spec in COVERED_LATER.values():
        assert set(spec.columns) == {c.name for c in metadata.tables[spec.table].columns}, spec.table


VAULT_POLICY = """\
team: vault
secrets: [pin]
reviewers: {olga: [operator]}
rules:
  - {name: pins, tools: [crm.set_pin], class: compensable}
"""


def test_a_snapshot_redacts_the_secret_fields_of_the_record_its_inspect_hook_read_back(
    ledger_url: str, tmp_path: Path
) -> None:
    """What `@tool.inspect` reads back from the other system is written to the snapshot file (and served by
    `GET /api/incidents/{id}/snapshot`) with the team's secret fields `[REDACTED]` at any depth, as the call's own
    arguments and result are: the file is evidence handed around, not a copy of the CRM's secrets."""
    pin, key = "pin-cnry-7Q2x", "sk-live-cnry-0Zt9"
    folder = tmp_path / "vault-policies"
    folder.mkdir()
    (folder / "vault.yaml").write_text(VAULT_POLICY)
    # A secret argument's hash is keyed: a PostgreSQL ledger has no key file beside it, so the test gives one.
    guard = Guard(policies=folder, db=ledger_url, log_level="error", secret_key="incident-test-key-0123456789")
    try:

        @guard.tool(name="crm.set_pin")
        def set_pin(contact_id: str, pin: str) -> dict[str, str]:
            return {"contact_id": contact_id}

        @set_pin.inspect
        def read_back(ctx: ReconcileContext) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
            return {"contact_id": "ct_1", "status": "active", "PIN": pin, "profile": [{"api_key": key}]}

        with guard.run("vault", source_event_id="ev-1"):
            set_pin(contact_id="ct_1", pin=pin)
        book = IncidentBook(ledger_of(guard))
        inc = book.open(Scope(source_event_ids=("ev-1",)), title="pins", opened_by="olga").incident_id
        path = tmp_path / "snap.jsonl"
        taken = book.snapshot(inc, path, by="olga", inspect=inspector_for(guard))
    finally:
        guard.close()
    text = path.read_text()
    assert taken.inspected == 1 and pin not in text and key not in text
    [record] = [json.loads(line) for line in text.splitlines()[1:-1]]
    assert record["args"] == {"contact_id": "ct_1", "pin": "[REDACTED]"}
    assert record["current"] == {
        "contact_id": "ct_1",
        "status": "active",
        "PIN": "[REDACTED]",
        "profile": [{"api_key": "[REDACTED]"}],
    }


@pytest.mark.parametrize(
    ("which", "named"),
    [({"state": "compelted"}, "completed, failed, in_doubt"), ({"verdict": "maybe"}, "safe, wrong, unclear, none")],
)
def test_a_record_filter_outside_the_states_or_verdicts_is_refused_naming_them(
    which: dict[str, str], named: str
) -> None:
    """A misspelt state or verdict would match no record and read as "none of those": it is refused instead."""
    with pytest.raises(GuardUsageError) as refused:
        RecordFilter(**which)  # pyright: ignore[reportArgumentType]
    assert named in str(refused.value)


def test_an_owner_is_checked_against_the_policies_of_every_team_in_the_incident(bad_run: BadRun) -> None:
    """With the policies, `open` takes a reviewer of the team as owner and refuses anyone else before recording."""
    policies = PolicySet.load_dir(bad_run.policies).policies
    scope = Scope(source_event_ids=("sync-1",))
    with pytest.raises(GuardUsageError, match="owner mallory is not a reviewer of team contacts"):
        bad_run.book.open(scope, title="t", opened_by="olga", owner="mallory", policies=policies)
    assert bad_run.book.list() == []
    assert bad_run.book.open(scope, title="t", opened_by="olga", owner="tess", policies=policies).owner == "tess"
