"""Secret arguments never reach the ledger file or the logs in clear text."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import Driver, Recorder

from guard import ApprovalPending, CallDenied, CallFailed, Guard, SecretKeyMissing, args_hash, report_external_id
from guard.ledger import Ledger
from guard.runtime.keys import SecretKey, key_file_for

CARD = "4111-1111-1111-9876"
API_KEY = "sk_live_Zq8uniqueSECRETvalue"


def test_card_numbers_and_api_keys_are_redacted_in_calls_events_approvals_results_and_logs(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard], db_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    guard = make_guard(approval="defer", log_level="debug")
    body = Recorder(result={"invoice_id": "inv-1", "charged_with": {"Card_Number": CARD}})
    tool = driver.tool(guard, body, name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
    args = {
        "customer_id": "cust-1",
        "amount_cents": 60000,
        "card_number": CARD,
        "auth": {"API_KEY": API_KEY, "scheme": "bearer"},
    }

    with driver.run(guard, "onboarding") as run, pytest.raises(ApprovalPending) as pending:
        run.call(tool, **args)
    ledger.decide(
        pending.value.approval_id, reviewer="alice", decision="approve", reviewer_roles=frozenset({"finance"})
    )
    with driver.run(guard, "onboarding", run_id=run.run_id) as resumed:
        result = resumed.call(tool, **args)

    assert body.calls == [args]  # the tool itself gets the real values
    assert result["charged_with"]["Card_Number"] == CARD  # and so does the agent
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.args == {
        "customer_id": "cust-1",
        "amount_cents": 60000,
        "card_number": "[REDACTED]",
        "auth": {"API_KEY": "[REDACTED]", "scheme": "bearer"},
    }
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
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
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
    driver: Driver, make_guard: Callable[..., Guard], db_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
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


def _pin_call(guard: Guard, driver: Driver, pin: str, run_id: str | None = None) -> tuple[str, str]:
    """A wire of money (quorum 2 of finance) with a PIN in the secret `api_key` field; (run id, approval id)."""
    tool = guard.tool_named("lab.wire_money") or driver.tool(
        guard, Recorder(result={"wire": "w-1"}), name="lab.wire_money"
    )
    with driver.run(guard, "lab", run_id=run_id) as run, pytest.raises(ApprovalPending) as pending:
        run.call(tool, account="acct-9", amount_cents=500, api_key=pin)
    return run.run_id, pending.value.approval_id


def test_a_four_digit_pin_cannot_be_recovered_from_the_visible_hash_or_the_default_key(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval="defer")
    run_id, approval_id = _pin_call(guard, driver, "4821")
    approval = guard.ledger.get_approval(approval_id)
    [call] = guard.ledger.calls_of(run_id)
    assert approval is not None and approval.args_hash == call.args_hash
    assert call.args == {"account": "acct-9", "amount_cents": 500, "api_key": "[REDACTED]"}
    seen = {call.args_hash, call.offered_key}
    guesses: set[str] = set()
    for n in range(10_000):  # the attack of the report: hash every PIN the way the hash and the key were made
        digest = args_hash({"account": "acct-9", "amount_cents": 500, "api_key": f"{n:04d}"})
        key = "auto:" + hashlib.sha256(f"{run_id}\x1flab.wire_money\x1f{digest}".encode()).hexdigest()[:32]
        guesses.update((digest, key))
    assert "4821" in {f"{n:04d}" for n in range(10_000)} and not (seen & guesses)


def test_the_hash_still_binds_the_exact_secret_values_so_an_approval_of_one_pin_never_runs_another(
    ledger: Ledger, driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(approval="defer")
    run_id, first = _pin_call(guard, driver, "4821")
    for reviewer in ("alice", "bob"):
        ledger.decide(first, reviewer=reviewer, decision="approve", reviewer_roles=frozenset({"finance"}))
    _, second = _pin_call(guard, driver, "1111", run_id=run_id)  # same run, same visible fields, another PIN
    assert second != first
    a, b = guard.ledger.get_approval(first), guard.ledger.get_approval(second)
    assert a is not None and b is not None and a.args_hash != b.args_hash and b.state == "pending"
    assert a.args_json == b.args_json  # what a reviewer sees is the same; what they approve is not


def test_the_hash_key_is_made_once_beside_the_ledger_private_never_inside_it_and_shared_by_its_workers(
    driver: Driver, make_guard: Callable[..., Guard], db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GUARD_SECRET_KEY", raising=False)
    monkeypatch.delenv("GUARD_SECRET_KEY_FILE", raising=False)
    first, second = make_guard(), make_guard()  # two workers on one ledger file
    body = Recorder(result={"draft": "d-1"})
    tools = [driver.tool(g, body, name="lab.halting_write") for g in (first, second)]
    key_file = key_file_for(db_path)
    assert not key_file.exists()  # made only when a call needs it
    args = {"customer_ref": "c-1", "api_key": "sk_live_worker_shared"}
    with driver.run(first, "lab") as run:
        run.call(tools[0], **args)
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with driver.run(second, "lab", run_id=run.run_id) as again:  # the same event, redelivered to the other worker
        assert again.call(tools[1], **args) == {"draft": "d-1"}
    assert len(body.calls) == 1  # it hashed alike (same key): its default idempotency key found the recorded call
    first.close()
    second.close()
    key = key_file.read_bytes().strip()
    raw = b"".join(f.read_bytes() for f in sorted(db_path.parent.glob(db_path.name + "*")))
    assert len(key) == 64 and key not in raw and key_file not in list(db_path.parent.glob(db_path.name + "*"))


def test_without_a_key_a_call_with_secrets_fails_closed_before_anything_is_recorded(
    driver: Driver, make_guard: Callable[..., Guard], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GUARD_SECRET_KEY", raising=False)
    monkeypatch.setenv("GUARD_SECRET_KEY_FILE", str(tmp_path / "missing.key"))
    guard = make_guard(secret_key=None)  # on either backend: no key given, and the one named cannot be read
    body = Recorder(result={"rows": 1})
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run:
        with pytest.raises(SecretKeyMissing, match=r"missing\.key"):
            run.call(tool, customer_ref="c-1", api_key="sk_live_no_key_here")
        assert guard.ledger.calls_of(run.run_id) == [] and body.calls == []
        run.call(tool, customer_ref="c-1")  # a call without secrets needs no key
    assert len(body.calls) == 1


def test_a_ledger_server_without_a_configured_key_names_the_settings_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARD_SECRET_KEY", raising=False)
    monkeypatch.delenv("GUARD_SECRET_KEY_FILE", raising=False)
    with pytest.raises(SecretKeyMissing, match=r"set GUARD_SECRET_KEY .* or GUARD_SECRET_KEY_FILE"):
        SecretKey("postgresql://guard@db/guard").get("billing.charge")
    monkeypatch.setenv("GUARD_SECRET_KEY", "a-long-enough-deployment-key")
    assert SecretKey("postgresql://guard@db/guard").get("billing.charge") == b"a-long-enough-deployment-key"
    with pytest.raises(SecretKeyMissing, match="shorter than 16"):
        SecretKey("postgresql://guard@db/guard", "short")


def test_workers_with_different_keys_record_different_hashes_for_the_same_secret_arguments(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    hashes: list[str] = []
    for secret_key in ("deployment-key-one-0123456789", "deployment-key-two-0123456789"):
        guard = make_guard(secret_key=secret_key)
        tool = driver.tool(guard, Recorder(result={"rows": 1}), name="lab.flaky_read")
        with driver.run(guard, "lab") as run:
            run.call(tool, customer_ref="c-1", ssn="078-05-1120")
        hashes.append(guard.ledger.calls_of(run.run_id)[0].args_hash)
    assert hashes[0] != hashes[1]


@pytest.mark.parametrize(
    ("secret", "forms"),
    [
        (4111111111111, ["4111111111111"]),
        (27182.818284, ["27182.818284"]),
        (["sk_list_member_1", 6180339887], ["sk_list_member_1", "6180339887"]),
        ({"inner": "sk_object_member", "n": 1414.21356}, ["sk_object_member", "1414.21356"]),
    ],
    ids=["integer", "float", "list", "object"],
)
def test_a_secret_of_any_json_type_is_scrubbed_by_value_from_the_result_and_the_error(
    driver: Driver, make_guard: Callable[..., Guard], db_path: Path, secret: Any, forms: list[str]
) -> None:
    guard = make_guard()
    echo = " ".join(forms)
    result = {
        "echo": f"used {echo}!",
        "as_number": secret if not isinstance(secret, list | dict) else 0,
        "by_key": {forms[0]: "x"},
        "list": [f"<{forms[-1]}>"],
    }
    reader = driver.tool(guard, Recorder(result=result), name="lab.flaky_read")
    writer = driver.tool(guard, Recorder(errors=[ValueError(f"refused {echo}")]), name="lab.halting_write")
    with driver.run(guard, "lab") as run:
        assert run.call(reader, customer_ref="c-1", api_key=secret) == result  # the agent gets it verbatim
        with pytest.raises(CallFailed) as failed:
            run.call(writer, customer_ref="c-1", api_key=secret)
    read, wrote = guard.ledger.calls_of(run.run_id)
    assert read.result is not None and read.result["echo"] == "used " + " ".join(["[REDACTED]"] * len(forms)) + "!"
    assert read.result["list"] == ["<[REDACTED]>"] and read.result["by_key"] == {"[REDACTED]": "x"}
    assert wrote.error == "ValueError: refused " + " ".join(["[REDACTED]"] * len(forms))
    guard.close()
    raw = b"".join(f.read_bytes() for f in sorted(db_path.parent.glob(db_path.name + "*")))
    for form in forms:
        assert form.encode() not in raw and form not in str(failed.value)


def test_a_nineteen_digit_card_number_in_a_secret_field_is_refused_without_being_quoted(
    driver: Driver, make_guard: Callable[..., Guard], db_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    guard = make_guard(log_level="debug")
    tool = driver.tool(guard, Recorder(), name="lab.flaky_read")
    with driver.run(guard, "lab") as run, pytest.raises(CallDenied) as denied:
        run.call(tool, customer_ref="c-1", api_key=4111111111111111117)
    assert "api_key is an integer beyond +/-2**53" in denied.value.reason
    [call] = guard.ledger.calls_of(run.run_id)
    guard.close()
    raw = b"".join(f.read_bytes() for f in sorted(db_path.parent.glob(db_path.name + "*")))
    logs = capfd.readouterr()
    for text in (
        str(denied.value),
        repr(denied.value.fields),
        call.reason or "",
        raw.decode("utf-8", "replace"),
        logs.err + logs.out,
    ):
        assert "4111111111111111117" not in text


def test_a_secret_a_tool_reports_as_an_external_id_is_scrubbed_before_it_is_recorded(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()

    def charge(**kw: Any) -> dict[str, str]:
        report_external_id("charge", f"ch_for_{kw['api_key']}")  # committed at once, before the tool returns
        raise ConnectionError("gateway hung up")

    tool = driver.tool(guard, charge, name="lab.halting_write")
    with driver.run(guard, "lab") as run, pytest.raises(CallFailed):
        run.call(tool, customer_ref="c-1", api_key="sk_live_reported_as_id")
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.external_id_map == {"charge": "ch_for_[REDACTED]"}
    events = guard.ledger.events_of(run.run_id)
    assert any(e.entity == "external_id" for e in events)
    assert all("sk_live_reported_as_id" not in e.detail for e in events)
