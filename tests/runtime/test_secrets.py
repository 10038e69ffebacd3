"""Secret arguments never reach the ledger file or the logs in clear text."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from runtime_support import Driver, Recorder

from guard import ApprovalPending, CallFailed, Guard

CARD = "4111-1111-1111-9876"
API_KEY = "sk_live_Zq8uniqueSECRETvalue"


def test_card_numbers_and_api_keys_are_redacted_in_calls_events_approvals_results_and_logs(
        driver: Driver, make_guard: Callable[..., Guard], db_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    guard = make_guard(approval="defer", log_level="debug")
    body = Recorder(result={"invoice_id": "inv-1", "charged_with": {"Card_Number": CARD}})
    tool = driver.tool(guard, body, name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
    args = {"customer_id": "cust-1", "amount_cents": 60000, "card_number": CARD,
            "auth": {"API_KEY": API_KEY, "scheme": "bearer"}}

    with driver.run(guard, "onboarding") as run, pytest.raises(ApprovalPending) as pending:
        run.call(tool, **args)
    guard.ledger.decide(pending.value.approval_id, reviewer="alice", decision="approve",
                        reviewer_roles=frozenset({"finance"}))
    with driver.run(guard, "onboarding", run_id=run.run_id) as resumed:
        result = resumed.call(tool, **args)

    assert body.calls == [args]  # the tool itself gets the real values
    assert result["charged_with"]["Card_Number"] == CARD  # and so does the agent
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.args == {"customer_id": "cust-1", "amount_cents": 60000, "card_number": "[REDACTED]",
                         "auth": {"API_KEY": "[REDACTED]", "scheme": "bearer"}}
    assert call.result == {"invoice_id": "inv-1", "charged_with": {"Card_Number": "[REDACTED]"}}
    approval = guard.ledger.get_approval(pending.value.approval_id)
    assert approval is not None and "[REDACTED]" in approval.args_json
    guard.close()

    files = sorted(db_path.parent.glob(db_path.name + "*"))
    raw = b"".join(f.read_bytes() for f in files)
    assert b"cust-1" in raw  # the record is there ...
    assert CARD.encode() not in raw and API_KEY.encode() not in raw  # ... without the secrets
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] > 5

    logs = capfd.readouterr()
    assert "call completed" in logs.err  # debug logging was on and wrote to stderr
    assert CARD not in logs.err + logs.out and API_KEY not in logs.err + logs.out


def test_a_secret_named_in_a_teams_policy_is_redacted_in_that_team_only(
        driver: Driver, make_guard: Callable[..., Guard]) -> None:
    guard = make_guard()
    lab_tool = driver.tool(guard, Recorder(result={"rows": 0}), name="lab.flaky_read")
    crm_tool = driver.tool(guard, Recorder(result={"rows": 0}), name="crm.find_contact")
    with driver.run(guard, "lab") as lab:
        lab.call(lab_tool, SSN="078-05-1120", customer_ref="visible")
    with driver.run(guard, "onboarding") as onboarding:
        onboarding.call(crm_tool, ssn="078-05-1120")
    [lab_call] = guard.ledger.calls_of(lab.run_id)
    [crm_call] = guard.ledger.calls_of(onboarding.run_id)
    assert lab_call.args == {"SSN": "[REDACTED]", "customer_ref": "visible"}
    assert crm_call.args == {"ssn": "078-05-1120"}  # onboarding's policy does not call it a secret


def test_a_secret_quoted_in_the_tools_own_error_message_is_scrubbed_from_the_ledger_and_the_logs(
        driver: Driver, make_guard: Callable[..., Guard], db_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    guard = make_guard(log_level="debug")
    body = Recorder(errors=[ValueError(f"gateway refused key {API_KEY} for card {CARD}")])
    tool = driver.tool(guard, body, name="billing.create_invoice")
    with driver.run(guard, "onboarding") as run, pytest.raises(CallFailed) as failed:
        run.call(tool, customer_id="cust-1", amount_cents=100, card_number=CARD, api_key=API_KEY)
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.error == "ValueError: gateway refused key [REDACTED] for card [REDACTED]"
    assert API_KEY not in str(failed.value) and CARD not in str(failed.value)
    guard.close()
    raw = b"".join(f.read_bytes() for f in sorted(db_path.parent.glob(db_path.name + "*")))
    assert b"gateway refused key" in raw and API_KEY.encode() not in raw and CARD.encode() not in raw
    logs = capfd.readouterr()
    assert "gateway refused key" in logs.err and API_KEY not in logs.err and CARD not in logs.err
