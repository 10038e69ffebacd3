"""`guard policy replay`: the recorded calls of a real ledger decided again under a changed policy (tightened,
loosened, unchanged, with a shadow rule), listing what would change and exiting 1 only when something would be
loosened. Nothing runs: the tools' bodies are not called and the ledger gains no call and no event."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from guard import ApprovalPending, CallDenied, Guard
from guard.cli import app
from guard.ledger import Ledger

SHOP = """\
team: shop
reviewers: {fiona: [finance]}
rules:
  - name: lookups
    tools: [crm.find]
    class: read
  - name: big-invoice
    tools: [billing.create_invoice]
    when: {amount_cents: {gt: 50000}}
    class: compensable
    approval: {roles: [finance]}
  - name: invoice
    tools: [billing.create_invoice]
    class: compensable
  - name: reminders
    tools: [email.send_reminder]
    class: compensable
"""


class Recorded:
    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.ran: list[dict[str, Any]] = []

    def write(self, name: str, text: str) -> Path:
        target = self.folder.parent / name
        target.mkdir(exist_ok=True)
        (target / "shop.yaml").write_text(text)
        return target

    def totals(self) -> tuple[int, int]:
        ledger = Ledger(self.url)
        try:
            with ledger.conns.read() as cur:
                cur.execute("SELECT (SELECT COUNT(*) FROM calls), (SELECT COUNT(*) FROM events)")
                calls, events = cur.fetchone()
                return int(calls), int(events)
        finally:
            ledger.close()


@pytest.fixture
def recorded(tmp_path: Path, ledger_url: str) -> Recorded:
    """A ledger holding three runs of team shop: a lookup, a small invoice, a big invoice waiting for approval, and
    the same reminder sent to ada in two runs."""
    folder = tmp_path / "recorded"
    folder.mkdir()
    (folder / "shop.yaml").write_text(SHOP)
    rec = Recorded(ledger_url, folder)
    guard = Guard(
        policies=folder, db=ledger_url, approval="defer", log_level="error", secret_key="test-deployment-key-0123456789"
    )

    def body(**kwargs: Any) -> dict[str, Any]:
        rec.ran.append(kwargs)
        return {"ok": True}

    find = guard.tool(body, name="crm.find")
    invoice = guard.tool(body, name="billing.create_invoice")
    remind = guard.tool(body, name="email.send_reminder")
    try:
        with guard.run("shop", run_id="evt-1"):
            find(email="ada@x.io")
            invoice(customer_id="c1", amount_cents=4900)
            with pytest.raises(ApprovalPending):
                invoice(customer_id="c1", amount_cents=90000)
        with guard.run("shop", run_id="evt-2"):
            remind(to="ada@x.io", invoice_id="inv_1")
        with guard.run("shop", run_id="evt-3"):
            remind(to="ada@x.io", invoice_id="inv_1")
    finally:
        guard.close()
    return rec


def _replay(rec: Recorded, policies: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    ran, totals = len(rec.ran), rec.totals()
    result = CliRunner().invoke(
        app, ["policy", "replay", "--policies", str(policies), "--db", rec.url, "--json", *extra]
    )
    assert result.exit_code in (0, 1), result.output
    assert len(rec.ran) == ran and rec.totals() == totals  # no tool ran, nothing was written
    return result.exit_code, json.loads(result.output)


def _changes(report: dict[str, Any]) -> list[tuple[str, int, str, str, str, str]]:
    return [
        (r["run_id"], r["seq"], c["kind"], c["before"], c["after"], c["direction"])
        for r in report["changes"]
        for c in r["changes"]
    ]


def test_an_unchanged_policy_changes_nothing_and_exits_0(recorded: Recorded) -> None:
    code, report = _replay(recorded, recorded.write("same", SHOP))
    assert code == 0 and report["calls"] == 5 and report["changes"] == []


def test_a_tightened_policy_lists_allowed_to_approval_and_a_duplicate_stop_rule_that_would_trip_and_exits_0(
    recorded: Recorded,
) -> None:
    tightened = SHOP.replace("gt: 50000", "gt: 1000").replace(
        "rules:\n",
        "stop:\n  duplicates:\n    - {name: once, tools: [email.send_reminder], fields: [to, invoice_id], "
        "within: 1h}\nrules:\n",
        1,
    )
    code, report = _replay(recorded, recorded.write("tight", tightened))
    assert code == 0
    assert _changes(report) == [
        ("evt-1", 2, "verdict", "allow", "approve", "tightened"),
        ("evt-3", 1, "stop", "no stop rule tripped", "stop rule once would trip", "tightened"),
    ]


def test_a_loosened_policy_lists_approval_to_allowed_and_a_lower_class_and_exits_1(recorded: Recorded) -> None:
    loosened = SHOP.replace("    approval: {roles: [finance]}\n", "").replace(
        "tools: [email.send_reminder]\n    class: compensable", "tools: [email.send_reminder]\n    class: read"
    )
    code, report = _replay(recorded, recorded.write("loose", loosened))
    assert code == 1 and report["loosened"] == 3 and report["tightened"] == 0
    assert _changes(report) == [
        ("evt-1", 3, "verdict", "approve", "allow", "loosened"),
        ("evt-2", 1, "class", "compensable", "read", "loosened"),
        ("evt-3", 1, "class", "compensable", "read", "loosened"),
    ]


def test_a_shadow_rule_is_listed_as_a_shadow_verdict_that_neither_tightens_nor_loosens(recorded: Recorded) -> None:
    shadow = SHOP.replace(
        "rules:\n",
        "stop:\n  duplicates:\n    - {name: once, tools: [email.send_reminder], "
        "fields: [to], within: 1h, mode: shadow}\nrules:\n",
        1,
    )
    code, report = _replay(recorded, recorded.write("shadow", shadow), "--run", "evt-3")
    assert code == 0 and report["calls"] == 1  # one run alone: its history holds no earlier reminder
    code, report = _replay(recorded, recorded.write("shadow", shadow))
    assert code == 0 and _changes(report) == [("evt-3", 1, "shadow", "-", "shadow rule once would trip", "shadow")]


def test_replay_refuses_an_invalid_policy_folder_with_exit_2_naming_the_file(recorded: Recorded) -> None:
    bad = recorded.write("bad", SHOP.replace("class: read", "class: reed"))
    result = CliRunner().invoke(app, ["policy", "replay", "--policies", str(bad), "--db", recorded.url])
    assert result.exit_code == 2 and "shop.yaml" in result.output


def test_a_call_a_stop_rule_denied_is_listed_loosened_when_the_new_policy_drops_the_rule(
    tmp_path: Path, ledger_url: str
) -> None:
    with_stop = SHOP.replace(
        "rules:\n",
        "stop:\n  duplicates:\n    - {name: once, tools: [email.send_reminder], fields: [to], within: 1h}\nrules:\n",
        1,
    )
    folder = tmp_path / "recorded"
    folder.mkdir()
    (folder / "shop.yaml").write_text(with_stop)
    rec = Recorded(ledger_url, folder)
    guard = Guard(policies=folder, db=ledger_url, log_level="error", secret_key="test-deployment-key-0123456789")
    try:

        def send(**kwargs: Any) -> dict[str, bool]:
            return {"ok": True}

        remind = guard.tool(send, name="email.send_reminder")
        for run_id in ("evt-1", "evt-2"):
            with guard.run("shop", run_id=run_id), contextlib.suppress(CallDenied):  # the second is a duplicate
                remind(to="ada@x.io")
    finally:
        guard.close()
    code, report = _replay(rec, rec.write("dropped", SHOP))
    assert code == 1
    assert _changes(report) == [("evt-2", 1, "stop", "a stop rule denied it", "no stop rule trips: allow", "loosened")]
    code, report = _replay(rec, rec.write("kept", with_stop))
    assert code == 0 and report["changes"] == []


def test_a_shadow_policy_rule_is_a_shadow_verdict_in_replay_and_in_explain(recorded: Recorded) -> None:
    watched = SHOP + (
        "  - {name: reminder-watch, tools: [email.send_reminder], class: irreversible, "
        "approval: {roles: [finance]}, mode: shadow}\n"
    )
    folder = recorded.write("watched", watched)
    code, report = _replay(recorded, folder)
    assert code == 0 and report["tightened"] == 0 and report["shadow"] == 2
    assert {c[2] for c in _changes(report)} == {"shadow"}
    explained = CliRunner().invoke(
        app,
        [
            "policy",
            "explain",
            "email.send_reminder",
            "--team",
            "shop",
            "--policies",
            str(folder),
            "--args",
            '{"to": "ada@x.io"}',
        ],
    )
    assert "shadow (not enforced): would be approve, irreversible, by rule reminder-watch" in explained.output
