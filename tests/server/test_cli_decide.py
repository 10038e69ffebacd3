"""`guard approvals approve | reject --server URL` with the reviewer's token from $GUARD_TOKEN, against the real
approval service (`guard serve`'s app on a real uvicorn on loopback) over a real ledger file: the service, not
the command line, says who decides."""

from __future__ import annotations

import json

from server_support import Service
from typer.testing import CliRunner

from guard.cli import app as cli


def decide(args: list[str], token: str | None, server_env: str | None = None) -> tuple[int, str]:
    env = {"GUARD_TOKEN": token, "GUARD_SERVER_URL": server_env, "GUARD_REVIEWER": None}
    done = CliRunner().invoke(cli, ["approvals", *args], env=env)
    return done.exit_code, done.output


def test_a_reviewer_approves_through_the_service_with_their_token_and_the_ledger_names_them(
    service: Service, live_url: str
) -> None:
    approval_id = service.waiting()
    code, out = decide(
        ["approve", approval_id, "--server", live_url, "--reason", "address checked"], service.tokens["sam"]
    )
    assert code == 0, out
    assert f"{approval_id} approved by sam (through {live_url})" in out and "may run now" in out
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "approved"
    assert [(d.reviewer, d.decision, d.reason) for d in service.ledger.decisions_of(approval_id)] == [
        ("sam", "approve", "address checked")
    ]


def test_a_token_holder_without_the_role_is_refused_by_the_service_and_the_call_keeps_waiting(
    service: Service, live_url: str
) -> None:
    approval_id = service.waiting()
    code, out = decide(["approve", approval_id, "--server", live_url], service.tokens["alice"])  # finance only
    assert code == 1 and "HTTP 403" in out and "[forbidden]" in out
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "pending"
    assert service.ledger.decisions_of(approval_id) == []


def test_the_agent_that_asked_cannot_approve_its_own_call_through_the_cli(service: Service, live_url: str) -> None:
    approval_id = service.waiting(actor="sam")  # sam asked: his token holds the role, self-approval stops him
    code, out = decide(["approve", approval_id, "--server", live_url, "--json"], service.tokens["sam"])
    assert code == 1
    refusal = json.loads(out)
    assert refusal["ok"] is False and refusal["status"] == 403
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "pending"


def test_a_rejection_through_the_service_named_by_the_environment_keeps_its_reason(
    service: Service, live_url: str
) -> None:
    approval_id = service.waiting()
    code, out = decide(
        ["reject", approval_id, "--reason", "wrong customer"], service.tokens["ops-lead"], server_env=live_url
    )
    assert code == 0, out
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None and (approval.state, approval.reason) == ("rejected", "wrong customer")
    assert [d.reviewer for d in service.ledger.decisions_of(approval_id)] == ["ops-lead"]


def test_without_a_valid_token_or_with_both_ways_at_once_nothing_is_decided_and_the_cli_says_why(
    service: Service, live_url: str
) -> None:
    approval_id = service.waiting()
    no_token, out = decide(["approve", approval_id, "--server", live_url], None)
    assert no_token == 2 and "GUARD_TOKEN" in out
    bad, out = decide(["approve", approval_id, "--server", live_url], "gtk_not-a-token")
    assert bad == 1 and "HTTP 401" in out
    both, out = decide(["approve", approval_id, "--server", live_url, "--as", "sam"], service.tokens["sam"])
    assert both == 2 and "operator power" in out
    neither, out = decide(["approve", approval_id], service.tokens["sam"])
    assert neither == 2 and "--server URL" in out
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "pending"
