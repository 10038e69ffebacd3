"""Approve and reject from Slack: the notifier's Block Kit buttons, `POST /slack/actions` on the real app over
HTTP (signed exactly as Slack signs, and forged, replayed, stale and unsigned requests refused), every check of
the page applied, the reason dialog, the message updated, and the blocked agent woken.

Slack itself is a loopback HTTP server (`slack_support.fake_slack`): its Web API (views.open), the interactions'
response URLs and the team's incoming webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from server_support import POLICIES, WELCOME, Service, serving
from slack_support import BOT_TOKEN, SIGNING_SECRET, FakeSlack, fake_slack, press, signed, submit

from guard import ApprovalPending, Guard
from guard.notify.blocks import button_value
from guard.server import create_app
from guard.server.slack_api import SlackApi
from guard.testing import poll

SAM, ALICE, OPS, STRANGER = "U0SAM0001", "U0ALICE01", "U0OPSLEAD", "U0NOBODY1"
MARIA = "U0MARIA01"  # a reviewer of growth (policies/growth.yaml), whose own Slack app signs with GROWTH_SECRET
GROWTH_SECRET = "growth-signing-secret-5a5a5a5a5a5a"
GROWTH_SLACK = """
slack:
  signing_secret_env: GUARD_TEST_GROWTH_SLACK_SECRET
"""
# The reviewers of policies/onboarding.yaml, given their Slack ids in the test's copy (STRANGER is nobody's).
SLACK_IDS = {
    "  alice: [finance]\n": f"  alice: {{roles: [finance], slack: {ALICE}}}\n",
    "  sam: [support]\n": f"  sam: {{roles: [support], slack: {SAM}}}\n",
    "  ops-lead: [finance, support]\n": f"  ops-lead: {{roles: [finance, support], slack: {OPS}}}\n",
}
MORE_RULES = """
  - name: announce
    tools: [email.announce]
    class: irreversible
    approval: {roles: [support], quorum: 2, expires_after: 1h}

  - name: flash
    tools: [email.flash]
    class: irreversible
    approval: {roles: [support], expires_after: 50ms}

notify:
  webhook_env: GUARD_TEST_SLACK_WEBHOOK
  secret_env: GUARD_TEST_WEBHOOK_KEY
  events: [approval_waiting]

slack:
  signing_secret_env: GUARD_TEST_SLACK_SECRET
  bot_token_env: GUARD_TEST_SLACK_BOT
"""


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with fake_slack() as slack:
        yield slack


@pytest.fixture
def service_policies(tmp_path: Path, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "slack-policies"
    folder.mkdir()
    text = (POLICIES / "onboarding.yaml").read_text()
    for line, ids in SLACK_IDS.items():
        assert line in text, line
        text = text.replace(line, ids, 1)
    (folder / "onboarding.yaml").write_text(text + MORE_RULES)
    (folder / "growth.yaml").write_text((POLICIES / "growth.yaml").read_text() + GROWTH_SLACK)
    monkeypatch.setenv("GUARD_TEST_GROWTH_SLACK_SECRET", GROWTH_SECRET)
    monkeypatch.setenv("GUARD_TEST_SLACK_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("GUARD_TEST_SLACK_BOT", BOT_TOKEN)
    monkeypatch.setenv("GUARD_TEST_SLACK_WEBHOOK", f"{fake.url}/webhook")
    monkeypatch.setenv("GUARD_TEST_WEBHOOK_KEY", "webhook-key")
    return folder


@pytest.fixture
def service_options(fake: FakeSlack) -> dict[str, Any]:
    return {"slack_api": SlackApi(base_url=f"{fake.url}/api", response_prefixes=(fake.url,)), "notify_every": None}


def waiting(
    service: Service,
    policies: Path,
    tool: str = "email.send_welcome",
    actor: str = "onboarding-agent",
    args: dict[str, Any] | None = None,
) -> str:
    """A call of `tool` waiting for approval (deferred), asked by `actor`; its approval id."""
    with Guard(policies=policies, db=service.url, actor=actor, approval="defer", log_level="error") as guard:
        guarded = guard.tool(lambda **kw: {"message_id": "m-1"}, name=tool)  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType]
        with pytest.raises(ApprovalPending) as pending, guard.run("onboarding"):
            guarded(**(args or WELCOME))
        return pending.value.approval_id


def post(live_url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{live_url}/slack/actions", content=body, headers=headers, timeout=10)


def at_once(urls: tuple[str, ...], request: tuple[bytes, dict[str, str]]) -> list[int]:
    """The statuses of `request` posted to every one of `urls` at the same instant (threads leaving one barrier)."""
    gate = threading.Barrier(len(urls))
    answers: list[int] = []

    def send(url: str) -> None:
        gate.wait(timeout=10)
        answers.append(post(url, *request).status_code)

    senders = [threading.Thread(target=send, args=(url,)) for url in urls]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=30)
    return answers


def value_of(service: Service, approval_id: str) -> str:
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None
    return button_value(approval_id, approval.args_hash)


def state_of(service: Service, approval_id: str) -> str:
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None
    return approval.state


# -- the message ----------------------------------------------------------------------------------------


def test_the_webhook_message_carries_approve_and_reject_buttons_bound_to_the_shown_hash_and_a_press_decides(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """The notifier posts Block Kit with the rule, the redacted arguments and a link; the Approve button's value,
    signed back as Slack would, approves exactly that call."""
    approval_id = waiting(service, service_policies, args={**WELCOME, "api_key": "sk-live-secret-42"})
    report = service.app.state.notifier.deliver()
    assert report.sent == 1
    [hook] = fake.at("/webhook")
    blocks = hook.body["blocks"]
    shown = json.dumps(blocks)
    assert "welcome-email" in shown and "ada@example.com" in shown and "[REDACTED]" in shown
    assert "sk-live-secret-42" not in shown and f"/approvals/{approval_id}" in shown
    [actions] = [b for b in blocks if b["type"] == "actions"]
    by_id = {e["action_id"]: e for e in actions["elements"]}
    assert set(by_id) == {"guard_approve", "guard_reject", "guard_open_page"}
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None
    assert json.loads(by_id["guard_approve"]["value"]) == {"approval_id": approval_id, "args_hash": approval.args_hash}

    answer = post(live_url, *signed(press(SAM, "guard_approve", by_id["guard_approve"]["value"], f"{fake.url}/r/1")))
    assert answer.status_code == 200 and answer.json()["state"] == "approved"
    assert state_of(service, approval_id) == "approved"
    [update] = fake.at("/r/1")
    assert update.body["replace_original"] is True and "*approved* by sam (<@U0SAM0001>)" in update.body["text"]


# -- refused before anything is read ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["forged", "tampered", "stale", "future", "unsigned", "no_timestamp"])
def test_a_request_not_signed_by_slack_now_is_refused_with_401_and_decides_nothing(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str, how: str
) -> None:
    """Forged (another secret), tampered (body changed after signing), stale or future (ten minutes away) and
    unsigned requests get 401 with their code; the approval stays pending and Slack is told nothing."""
    approval_id = waiting(service, service_policies)
    payload = press(SAM, "guard_approve", value_of(service, approval_id), f"{fake.url}/r/1")
    body, headers = signed(
        payload,
        secret="not-the-secret" if how == "forged" else SIGNING_SECRET,
        at=time.time() - 600 if how == "stale" else time.time() + 600 if how == "future" else None,
    )
    if how == "tampered":
        body = body.replace(b"U0SAM0001", b"U0OPSLEAD")
    if how == "unsigned":
        del headers["X-Slack-Signature"]
    if how == "no_timestamp":
        del headers["X-Slack-Request-Timestamp"]
    answer = post(live_url, body, headers)
    code = {"tampered": "forged", "future": "stale", "no_timestamp": "unsigned"}.get(how, how)
    assert answer.status_code == 401 and answer.json()["code"] == code
    assert state_of(service, approval_id) == "pending"
    assert fake.paths() == []


def test_a_replayed_request_is_refused_with_409_and_the_first_one_stands(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """The same signed request sent twice: the first approves, the replay is refused and changes nothing."""
    approval_id = waiting(service, service_policies, tool="email.announce")
    request = signed(press(SAM, "guard_approve", value_of(service, approval_id), f"{fake.url}/r/1"))
    first = post(live_url, *request)
    assert first.status_code == 200 and first.json()["state"] == "pending"  # quorum 2: one approval so far
    again = post(live_url, *request)
    assert again.status_code == 409 and again.json()["code"] == "replayed"
    assert len(service.ledger.decisions_of(approval_id)) == 1


@pytest.fixture
def replica_b(service: Service, service_policies: Path, service_options: dict[str, Any]) -> Iterator[str]:
    """A second replica of the service: another app on the same ledger (and the same policies), served on its own
    port; it shares no memory with the first."""
    app = create_app(service.url, service_policies, session_secret=b"s" * 32, **service_options)
    try:
        with serving(app) as url:
            yield url
    finally:
        app.state.desk.ledger.close()


def test_a_request_accepted_by_one_replica_and_replayed_to_another_is_refused_there_with_409(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str, replica_b: str
) -> None:
    """The same signed request sent to replica A, then to replica B: A decides, B refuses it as replayed (the
    ledger remembers the signature, not A's memory) and the ledger holds one decision."""
    approval_id = waiting(service, service_policies, tool="email.announce")
    request = signed(press(SAM, "guard_approve", value_of(service, approval_id), f"{fake.url}/r/1"))
    first = post(live_url, *request)
    assert first.status_code == 200 and first.json()["state"] == "pending"
    again = post(replica_b, *request)
    assert again.status_code == 409 and again.json()["code"] == "replayed"
    assert len(service.ledger.decisions_of(approval_id)) == 1


def test_the_same_request_sent_to_two_replicas_at_the_same_instant_is_accepted_by_exactly_one(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str, replica_b: str
) -> None:
    """A request delivered twice at once, to each replica: the database's uniqueness lets one accept it and the
    other answers 409, in every round."""
    for n in range(4):
        approval_id = waiting(service, service_policies, tool="email.announce")
        request = signed(press(SAM, "guard_approve", value_of(service, approval_id), f"{fake.url}/r/{n}"))
        assert sorted(at_once((live_url, replica_b), request)) == [200, 409], n
        assert len(service.ledger.decisions_of(approval_id)) == 1


def test_a_request_without_a_payload_is_refused_with_400(service: Service, live_url: str) -> None:
    """A correctly signed body that is not Slack's form (no `payload`) is a 400, not a decision."""
    body = b"hello=world"
    _, headers = signed({})
    stamp = headers["X-Slack-Request-Timestamp"]
    headers["X-Slack-Signature"] = (
        "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    )
    answer = post(live_url, body, headers)
    assert answer.status_code == 400 and answer.json()["code"] == "invalid"


# -- every check of the page ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "actor", "code"),
    [
        (STRANGER, "onboarding-agent", "forbidden"),  # a Slack user the policy does not map
        (ALICE, "onboarding-agent", "forbidden"),  # a reviewer without the role (finance, not support)
        (SAM, "sam", "self_approval"),  # the asker
    ],
)
def test_a_press_by_someone_the_page_would_refuse_decides_nothing_and_tells_them_alone(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str, user: str, actor: str, code: str
) -> None:
    """Unknown Slack users, reviewers without the role and the asker are refused as on the page; the refusal is an
    ephemeral reply (the channel's message keeps its buttons)."""
    approval_id = waiting(service, service_policies, actor=actor)
    answer = post(live_url, *signed(press(user, "guard_approve", value_of(service, approval_id), f"{fake.url}/r/1")))
    assert answer.status_code == 200 and answer.json()["code"] == code
    assert state_of(service, approval_id) == "pending"
    [reply] = fake.at("/r/1")
    assert reply.body["response_type"] == "ephemeral" and reply.body["replace_original"] is False


def test_a_press_for_other_arguments_than_the_ledger_holds_is_refused(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """A button whose hash is not the call's (a message for other arguments) approves nothing."""
    approval_id = waiting(service, service_policies)
    other = button_value(approval_id, "sha256:" + "0" * 64)
    answer = post(live_url, *signed(press(SAM, "guard_approve", other, f"{fake.url}/r/1")))
    assert answer.status_code == 200 and answer.json()["code"] == "invalid"
    assert "not the ones waiting" in answer.json()["detail"]
    assert state_of(service, approval_id) == "pending"


def test_a_press_after_the_approval_expired_is_refused(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """An approval past its expiry cannot be approved from Slack (410 from the desk, told to the reviewer)."""
    approval_id = waiting(service, service_policies, tool="email.flash")
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None
    poll(lambda: service.ledger.database_time() > approval.expires_at, what="the approval's expiry")
    answer = post(live_url, *signed(press(SAM, "guard_approve", value_of(service, approval_id), f"{fake.url}/r/1")))
    assert answer.json()["status"] == 410
    assert state_of(service, approval_id) != "approved"


def test_a_quorum_of_two_needs_two_reviewers_in_slack_and_the_message_says_who_is_still_needed(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """The first approval leaves the call pending (the buttons stay); a second reviewer's approval decides it."""
    approval_id = waiting(service, service_policies, tool="email.announce")
    value = value_of(service, approval_id)
    first = post(live_url, *signed(press(SAM, "guard_approve", value, f"{fake.url}/r/1")))
    assert first.json()["state"] == "pending"
    [note] = fake.at("/r/1")
    assert note.body["replace_original"] is False and "waits for 2" in note.body["text"]
    second = post(live_url, *signed(press(OPS, "guard_approve", value, f"{fake.url}/r/2")))
    assert second.json()["state"] == "approved" and state_of(service, approval_id) == "approved"
    [done] = fake.at("/r/2")
    assert done.body["replace_original"] is True and "ops-lead" in done.body["text"]


# -- reject with a reason ----------------------------------------------------------------------------------


def test_reject_opens_a_reason_dialog_and_its_submission_rejects_with_that_reason(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """Reject calls views.open with the bot token and the press's trigger id; the submitted dialog rejects the
    call with the reason and replaces the message with who rejected and why."""
    approval_id = waiting(service, service_policies)
    pressed = post(
        live_url,
        *signed(press(SAM, "guard_reject", value_of(service, approval_id), f"{fake.url}/r/1", trigger_id="trig-42")),
    )
    assert pressed.status_code == 200 and state_of(service, approval_id) == "pending"
    [opened] = fake.at("/api/views.open")
    assert opened.headers["authorization"] == f"Bearer {BOT_TOKEN}" and opened.body["trigger_id"] == "trig-42"
    metadata = opened.body["view"]["private_metadata"]

    empty = post(live_url, *signed(submit(SAM, metadata, "  ")))
    assert empty.json()["response_action"] == "errors" and state_of(service, approval_id) == "pending"

    done = post(live_url, *signed(submit(SAM, metadata, "wrong customer")))
    assert done.status_code == 200 and done.content == b""  # an empty 200 closes the dialog
    approval = service.ledger.get_approval(approval_id)
    assert approval is not None and approval.state == "rejected" and approval.reason == "wrong customer"
    [update] = fake.at("/r/1")
    assert update.body["replace_original"] is True and "*rejected* by sam" in update.body["text"]
    assert "wrong customer" in update.body["text"]


def test_when_the_reason_dialog_cannot_be_opened_the_reviewer_is_sent_to_the_page_and_nothing_is_decided(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """views.open refused (an expired trigger): an ephemeral reply links the page; the call stays pending."""
    fake.views_ok = False
    approval_id = waiting(service, service_policies)
    answer = post(live_url, *signed(press(SAM, "guard_reject", value_of(service, approval_id), f"{fake.url}/r/1")))
    assert answer.json()["code"] == "slack_unavailable" and state_of(service, approval_id) == "pending"
    [reply] = fake.at("/r/1")
    assert reply.body["response_type"] == "ephemeral" and f"/approvals/{approval_id}" in reply.body["text"]


def test_a_dialog_submitted_by_someone_the_page_would_refuse_shows_the_refusal_in_the_dialog(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """A reason dialog submitted by a reviewer without the role gets the dialog's error and decides nothing."""
    approval_id = waiting(service, service_policies)
    metadata = json.dumps(
        {
            "approval_id": approval_id,
            "args_hash": json.loads(value_of(service, approval_id))["args_hash"],
            "response_url": f"{fake.url}/r/1",
        }
    )
    answer = post(live_url, *signed(submit(ALICE, metadata, "no")))
    assert answer.json()["response_action"] == "errors" and "roles" in answer.json()["errors"]["reason"]
    assert state_of(service, approval_id) == "pending"


# -- no existence oracle across teams ---------------------------------------------------------------------


def test_a_press_from_another_teams_slack_app_is_answered_as_for_an_approval_that_does_not_exist(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """Maria, through growth's Slack app, presses Approve on onboarding's approval and on an id that does not exist:
    the answer and her ephemeral reply are the same but for the id (404 `not_found`), and nothing is decided."""
    approval_id = waiting(service, service_policies)
    unknown = "apr_" + "0" * (len(approval_id) - 4)
    shown = json.loads(value_of(service, approval_id))["args_hash"]
    answers: list[str] = []
    for n, ident in enumerate((unknown, approval_id)):
        press_ = press(MARIA, "guard_approve", button_value(ident, shown), f"{fake.url}/o/{n}")
        answer = post(live_url, *signed(press_, secret=GROWTH_SECRET))
        assert answer.status_code == 200 and answer.json()["status"] == 404 and answer.json()["code"] == "not_found"
        [reply] = fake.at(f"/o/{n}")
        answers.append((answer.text + json.dumps(reply.body)).replace(ident, "<id>"))
    assert answers[0] == answers[1]
    assert state_of(service, approval_id) == "pending"


def test_a_reason_dialog_from_another_teams_slack_app_is_answered_as_for_an_approval_that_does_not_exist(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """The reject dialog's submission, signed by growth's app, about onboarding's approval or an unknown id: the
    dialog shows the same error, and nothing is decided."""
    approval_id = waiting(service, service_policies)
    unknown = "apr_" + "0" * (len(approval_id) - 4)
    answers: list[str] = []
    for ident in (unknown, approval_id):
        metadata = json.dumps({"approval_id": ident, "args_hash": "sha256:x", "response_url": ""})
        answer = post(live_url, *signed(submit(MARIA, metadata, "no"), secret=GROWTH_SECRET))
        assert answer.status_code == 200 and "no approval" in answer.json()["errors"]["reason"]
        answers.append(answer.text.replace(ident, "<id>"))
    assert answers[0] == answers[1]
    assert state_of(service, approval_id) == "pending"


# -- the agent --------------------------------------------------------------------------------------------


def test_an_approval_made_in_slack_wakes_the_blocked_agent_which_runs_the_call_once(
    service: Service, service_policies: Path, fake: FakeSlack, live_url: str
) -> None:
    """An agent blocked on its welcome email runs it as soon as sam approves in Slack."""
    sent: list[dict[str, Any]] = []
    with Guard(
        policies=service_policies,
        db=service.url,
        actor="onboarding-agent",
        approval="block",
        approval_timeout=30,
        log_level="error",
    ) as guard:

        def send(**kw: Any) -> dict[str, str]:
            sent.append(kw)
            return {"message_id": "m-1"}

        tool = guard.tool(send, name="email.send_welcome")

        def work() -> Any:
            with guard.run("onboarding"):
                return tool(**WELCOME)

        outcome: list[Any] = []
        agent = threading.Thread(target=lambda: outcome.append(work()), daemon=True)
        agent.start()
        [approval] = poll(lambda: service.ledger.list_approvals(team="onboarding"), what="the waiting approval")
        assert sent == []
        answer = post(
            live_url, *signed(press(SAM, "guard_approve", value_of(service, approval.approval_id), f"{fake.url}/r/1"))
        )
        assert answer.json()["state"] == "approved"
        agent.join(timeout=10)
        assert not agent.is_alive(), "the agent is still blocked"
    assert outcome == [{"message_id": "m-1"}] and sent == [WELCOME]


@pytest.mark.parametrize("where", ["payload", "button value", "dialog metadata"])
def test_a_signed_request_nesting_json_thousands_of_levels_deep_is_refused_with_400_not_a_500(
    service: Service, live_url: str, where: str
) -> None:
    """JSON nested deeper than the parser goes raises RecursionError, not ValueError: a correctly signed request
    holding such JSON in its payload, a button's value or a dialog's metadata is a 400 like any other form that is
    not Slack's, and decides nothing."""
    approval_id = service.waiting()
    deep = "[" * 100_000 + "]" * 100_000
    if where == "payload":
        body = urlencode({"payload": deep}).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest}",
        }
    elif where == "button value":
        action = {"action_id": "guard_approve", "value": deep}
        body, headers = signed({"type": "block_actions", "user": {"id": SAM}, "actions": [action]})
    else:
        view: dict[str, Any] = {"callback_id": "guard_reject_reason", "private_metadata": deep, "state": {"values": {}}}
        body, headers = signed({"type": "view_submission", "user": {"id": SAM}, "view": view})
    answer = post(live_url, body, headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid"
    assert service.ledger.decisions_of(approval_id) == []
