"""The reviewer page in a real headless Chromium (Debian's, driven by Playwright) over a real uvicorn server.

Every decision is checked in the ledger (a second `Ledger` on the same SQLite file, or `guard approvals show
--json`), not only on the page. Waits are Playwright's auto-waiting expectations and `guard.testing.poll`.
When Chromium is missing or cannot start, these tests fail with the fix in the message; they never skip.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from browser_support import (
    waiting_invoice,
    waiting_prospect_email,
)
from playwright.sync_api import Browser, BrowserContext, Page, expect
from server_support import Service

from guard.ledger import ApprovalRecord
from guard.testing import poll

# The page is the same HTML over the same desk on either backend (the desk's decisions run on both in
# test_server_page.py and test_server_api.py); a headless Chromium is the slowest thing in the suite, so the page
# tests drive it once, on SQLite.
pytestmark = pytest.mark.sqlite_only(
    reason="Chromium page tests run on one backend to keep the suite's time; the desk under them runs on both"
)

NOTE = "PO 4471 matches; finance signed off"


@pytest.fixture
def bare_context(browser: Browser, live_url: str) -> Iterator[BrowserContext]:
    """A fresh browser profile on the service, exactly as Chromium behaves."""
    ctx = browser.new_context(base_url=live_url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(10_000)
    expect.set_options(timeout=10_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def context(bare_context: BrowserContext) -> BrowserContext:
    """A fresh browser profile of this test's own."""
    return bare_context


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in_form(page: Page, service: Service, reviewer: str) -> None:
    page.goto("/login")
    page.get_by_label("Reviewer token").fill(service.tokens[reviewer])
    page.get_by_role("button", name="Sign in").click()


def sign_in(page: Page, service: Service, reviewer: str) -> None:
    sign_in_form(page, service, reviewer)
    expect(page.get_by_role("heading", name="Waiting for you")).to_be_visible()
    expect(page.get_by_text(f"signed in as {reviewer}")).to_be_visible()


def settled(service: Service, approval_id: str) -> ApprovalRecord:
    """The approval once the ledger shows it decided (polled with a deadline)."""

    def read() -> ApprovalRecord | None:
        record = service.ledger.get_approval(approval_id)
        return record if record is not None and record.state != "pending" else None

    record = poll(read, timeout=10, what=f"approval {approval_id} decided in the ledger")
    assert record is not None
    return record


def pending(service: Service, approval_id: str) -> ApprovalRecord:
    record = service.ledger.get_approval(approval_id)
    assert record is not None
    return record


def test_signing_in_from_an_unmodified_chromium_reaches_the_queue(
    service: Service, bare_context: BrowserContext
) -> None:
    page = bare_context.new_page()
    sign_in_form(page, service, "alice")
    expect(page.get_by_role("heading", name="Waiting for you")).to_be_visible(timeout=2_000)


def test_a_reviewer_signs_in_with_a_token_and_the_queue_holds_only_calls_they_may_decide(
    service: Service, page: Page
) -> None:
    invoice = waiting_invoice(service.url)  # onboarding, needs finance: alice's
    email = service.waiting()  # onboarding, needs support: not alice's
    prospect = waiting_prospect_email(service.url)  # growth: another team's
    page.goto("/")
    expect(page).to_have_url("/login")
    page.get_by_label("Reviewer token").fill("gtk_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    assert page.context.cookies() == []

    sign_in(page, service, "alice")
    expect(page.get_by_role("heading", name="Waiting for you (1)")).to_be_visible()
    link = page.get_by_role("link", name="billing.create_invoice")
    expect(link).to_have_attribute("href", f"/approvals/{invoice}")
    row = page.get_by_role("row").filter(has=link)
    expect(row).to_contain_text("onboarding")
    expect(row).to_contain_text("onboarding-agent")
    expect(row).to_contain_text("finance")
    for other in (email, prospect):
        expect(page.locator(f'a[href="/approvals/{other}"]')).to_have_count(0)
    expect(page.get_by_role("link", name="email.send_prospect")).to_have_count(0)
    [cookie] = page.context.cookies()
    assert (cookie.get("name"), cookie.get("httpOnly"), cookie.get("sameSite")) == ("guard_session", True, "Strict")


def test_the_call_page_shows_the_run_so_far_the_exact_arguments_and_hash_the_rule_requester_and_expiry(
    service: Service, page: Page
) -> None:
    approval_id = waiting_invoice(service.url)
    record = pending(service, approval_id)
    sign_in(page, service, "alice")
    page.get_by_role("link", name="billing.create_invoice").click()
    expect(page).to_have_url(f"/approvals/{approval_id}")
    expect(page.get_by_role("heading", name="billing.create_invoice (pending)")).to_be_visible()

    facts = page.locator("dl")
    for term, value in {
        "Team": "onboarding",
        "Class": "compensable",
        "Rule": "big-invoice",
        "Asked by": "onboarding-agent",
        "Needs": "1 of roles finance",
        "Expires": re.compile(
            re.escape(dt.datetime.fromtimestamp(record.expires_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
            + r" \(in \d+m \d+s\)"
        ),
    }.items():  # and what is left
        expect(facts.locator(f'dt:text-is("{term}") + dd')).to_have_text(value)
    expect(page.locator("code").filter(has_text=record.args_hash)).to_have_count(1)
    assert json.loads(page.locator("pre").inner_text()) == json.loads(record.args_json)
    assert json.loads(record.args_json)["amount_cents"] == 1_250_000

    run = page.get_by_role("heading", name="The run so far")
    expect(run).to_be_visible()
    expect(page.get_by_text(f"Run {record.run_id}, team onboarding, subject ada@example.com")).to_be_visible()
    contact = page.get_by_role("row").filter(has_text="crm.upsert_contact")
    expect(contact).to_contain_text("completed")
    expect(contact).to_contain_text("contact=ct_ada_1001")
    this = page.get_by_role("row").filter(has_text="billing.create_invoice")
    expect(this).to_contain_text("awaiting_approval")
    expect(this).to_contain_text("this call")


def test_a_reviewer_approves_with_only_the_keyboard_and_the_ledger_records_who_decided(
    service: Service, page: Page
) -> None:
    approval_id = waiting_invoice(service.url)
    record = pending(service, approval_id)
    page.goto("/login")
    token = page.get_by_label("Reviewer token")
    expect(token).to_be_focused()  # autofocus: typing starts at once
    page.keyboard.type(service.tokens["alice"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Waiting for you (1)")).to_be_visible()

    # Tab order on the queue: the home link, the pauses link, sign out, then the waiting call.
    for stop in (
        page.get_by_role("link", name="Guard approvals"),
        page.get_by_role("link", name="Pauses"),
        page.get_by_role("button", name="Sign out"),
        page.get_by_role("link", name="billing.create_invoice"),
    ):
        page.keyboard.press("Tab")
        expect(stop).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"/approvals/{approval_id}")

    note = page.get_by_label("Note (optional)")
    expect(note).to_be_focused()  # autofocus lands in the approve form, not on a destructive button
    page.keyboard.type(NOTE)
    page.keyboard.press("Tab")
    approve = page.get_by_role("button", name="Approve these exact arguments")
    expect(approve).to_be_focused()
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"/approvals/{approval_id}?done=approved")
    expect(page.get_by_role("status")).to_have_text("Approved: the call may run now.")
    expect(page.get_by_role("button", name="Approve these exact arguments")).to_have_count(0)
    after = settled(service, approval_id)
    assert after.state == "approved" and json.loads(after.decided_by or "[]") == ["alice"]
    [decision] = service.ledger.decisions_of(approval_id)
    assert (decision.reviewer, decision.decision, decision.reason, decision.args_hash) == (
        "alice",
        "approve",
        NOTE,
        record.args_hash,
    )
    assert service.ledger.call_state(record.call_id) == "approved"


def guard_cli_show(service: Service, approval_id: str) -> dict[str, Any]:
    """`guard approvals show ID --json` on the service's ledger, as an operator would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "guard", "approvals", "show", approval_id, "--json", "--db", service.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_rejecting_needs_a_reason_and_the_reason_is_in_the_ledger(service: Service, page: Page) -> None:
    approval_id = service.waiting()
    record = pending(service, approval_id)
    sign_in(page, service, "sam")
    page.goto(f"/approvals/{approval_id}")
    reject = page.get_by_role("button", name="Reject")
    reason = page.get_by_label("Reason (shown to the agent)")

    reject.click()  # an empty reason: the browser keeps the form (the field is required) and nothing is sent
    expect(reason).to_be_focused()
    assert reason.evaluate("el => el.validity.valueMissing") is True
    expect(page).to_have_url(f"/approvals/{approval_id}")
    assert service.ledger.decisions_of(approval_id) == []

    why = "Workspace ws_1 is not provisioned yet; send after go-live"
    reason.fill(why)
    reject.click()
    expect(page).to_have_url(f"/approvals/{approval_id}?done=rejected")
    expect(page.get_by_role("status")).to_have_text("Rejected: the call will not run.")
    expect(page.locator('dt:text-is("Reason") + dd')).to_have_text(why)
    after = settled(service, approval_id)
    assert (after.state, after.reason, json.loads(after.decided_by or "[]")) == ("rejected", why, ["sam"])
    assert service.ledger.call_state(record.call_id) == "rejected"
    shown = guard_cli_show(service, approval_id)
    assert (shown["state"], shown["reason"], shown["decided_by"]) == ("rejected", why, ["sam"])
    assert service.sent == []


def test_a_reviewer_edits_the_arguments_on_the_page_and_the_approval_binds_to_the_edit(
    service: Service, page: Page
) -> None:
    approval_id = service.waiting()
    record = pending(service, approval_id)
    sign_in(page, service, "sam")
    page.goto(f"/approvals/{approval_id}")
    editor = page.get_by_label("Edit the arguments, then approve those (JSON; secrets stay [REDACTED])")
    assert json.loads(editor.input_value()) == json.loads(record.args_json)  # starts from the exact arguments

    editor.fill("{not json")
    page.get_by_role("button", name="Approve the edited arguments").click()
    expect(page.get_by_role("alert")).to_contain_text("not JSON")
    assert service.ledger.decisions_of(approval_id) == []

    edited = {**json.loads(record.args_json), "to": "billing@example.com"}
    page.get_by_label("Edit the arguments, then approve those (JSON; secrets stay [REDACTED])").fill(json.dumps(edited))
    page.get_by_role("button", name="Approve the edited arguments").click()
    expect(page).to_have_url(f"/approvals/{approval_id}?done=approved")
    expect(page.get_by_role("heading", name="Arguments, as edited by a reviewer")).to_be_visible()
    after = settled(service, approval_id)
    assert after.state == "approved" and after.approved_args_json is not None
    assert json.loads(after.approved_args_json) == edited and after.approved_args_hash != record.args_hash
    assert service.sent == []  # the agent has not resumed yet: nothing ran on the page's say-so alone


def test_the_requester_sees_no_decision_buttons_and_a_forced_decision_is_refused(service: Service, page: Page) -> None:
    approval_id = service.waiting(actor="sam")  # sam holds `support`: only self-approval stops him
    record = pending(service, approval_id)
    sign_in(page, service, "sam")
    expect(page.get_by_role("heading", name="Waiting for you (0)")).to_be_visible()
    expect(page.get_by_text("Nothing waits for you.")).to_be_visible()

    page.goto(f"/approvals/{approval_id}")
    expect(page.get_by_text("You cannot decide this approval now.")).to_be_visible()
    expect(page.get_by_role("button", name="Approve these exact arguments")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)

    # The same post the approve form would make, from his own session with his own CSRF token.
    csrf = page.locator('input[name="csrf_token"]').first.input_value()
    forced = page.request.post(
        f"/approvals/{approval_id}/decision",
        max_redirects=0,
        form={"csrf_token": csrf, "args_hash": record.args_hash, "decision": "approve", "reason": "mine"},
    )
    assert forced.status == 403, forced.text()
    assert "sam asked for this call and cannot decide it" in forced.text()
    assert service.ledger.decisions_of(approval_id) == []
    assert pending(service, approval_id).state == "pending"


class _AttackerSite(ThreadingHTTPServer):
    """Another loopback origin serving one page, `html`."""

    html = b""


class _AttackerPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _AttackerSite)
        body = self.server.html
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[tuple[_AttackerSite, int]]:
    server = _AttackerSite(("127.0.0.1", 0), _AttackerPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("host", "status", "says"),
    [
        # Same site (cookies are sent: the port is not part of a site), other origin: the Origin check refuses.
        ("127.0.0.1", 403, "form posts from other sites are refused"),
        # Another site: the SameSite=Strict cookie stays home, so the post has no session.
        ("localhost", 401, "sign in first"),
    ],
)
def test_a_form_posted_from_another_origin_is_refused_and_nothing_is_decided(
    service: Service, page: Page, live_url: str, attacker: tuple[_AttackerSite, int], host: str, status: int, says: str
) -> None:
    approval_id = service.waiting()
    record = pending(service, approval_id)
    sign_in(page, service, "sam")
    page.goto(f"/approvals/{approval_id}")
    # The worst case: the attacker even knows this session's CSRF token and the arguments' hash.
    csrf = page.locator('input[name="csrf_token"]').first.input_value()
    server, port = attacker
    server.html = (
        f'<!doctype html><title>Win a prize</title><form method="post" '
        f'action="{live_url}/approvals/{approval_id}/decision">'
        f'<input type="hidden" name="csrf_token" value="{csrf}">'
        f'<input type="hidden" name="args_hash" value="{record.args_hash}">'
        '<input type="hidden" name="decision" value="approve">'
        '<button type="submit">Claim</button></form>'
    ).encode()
    page.goto(f"http://{host}:{port}/")
    with page.expect_response(lambda r: r.url.endswith("/decision")) as answer:
        page.get_by_role("button", name="Claim").click()
    assert answer.value.status == status
    expect(page.locator("body")).to_contain_text(says)
    assert service.ledger.decisions_of(approval_id) == []
    assert pending(service, approval_id).state == "pending"


def test_signing_out_ends_the_session_in_the_browser(service: Service, page: Page) -> None:
    approval_id = service.waiting()
    sign_in(page, service, "sam")
    page.goto(f"/approvals/{approval_id}")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/login")
    assert page.context.cookies() == []
    page.go_back()  # the approval page is never cached: going back asks the server, which wants a session
    expect(page).to_have_url("/login")
    page.goto("/")
    expect(page).to_have_url("/login")
    page.goto(f"/approvals/{approval_id}")
    expect(page).to_have_url("/login")


def test_a_session_cookie_copied_before_sign_out_is_refused_after_it(
    service: Service, browser: Browser, page: Page, live_url: str
) -> None:
    sign_in(page, service, "sam")
    [copied] = page.context.cookies()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/login")
    replay = browser.new_context(base_url=live_url)
    try:
        replay.add_cookies([{"name": copied.get("name", ""), "value": copied.get("value", ""), "url": live_url}])
        other = replay.new_page()
        other.goto("/")
        expect(other).to_have_url("/login", timeout=2_000)
    finally:
        replay.close()


def test_an_owner_pauses_and_lifts_on_the_page_and_a_plain_reviewer_can_neither(
    service: Service, context: BrowserContext, browser: Browser, live_url: str
) -> None:
    page = context.new_page()
    sign_in(page, service, "alice")  # alice holds finance: the backup owner of onboarding
    page.get_by_role("link", name="Pauses").click()
    page.get_by_label("Team", exact=True).select_option("onboarding")
    page.get_by_label("Why (the agent").fill("invoices doubled")
    page.get_by_role("button", name="Pause now").click()
    expect(page.get_by_role("status")).to_contain_text("Paused: new calls are denied now")
    [active] = service.ledger.active_pauses()
    assert (active["scope"], active["target"], active["paused_by"], active["reason"]) == (
        "team",
        "onboarding",
        "alice",
        "invoices doubled",
    )

    other = browser.new_context(base_url=live_url)
    try:
        sam = other.new_page()
        sign_in(sam, service, "sam")  # a reviewer of the team, neither owner nor operator
        sam.goto("/pauses")
        expect(sam.get_by_role("table")).to_contain_text("ops-lead (backup finance)")
        expect(sam.get_by_role("button", name=re.compile("Lift the pause"))).to_have_count(0)
        sam.get_by_label("Why (the agent").fill("mine")
        sam.get_by_role("button", name="Pause now").click()
        expect(sam.get_by_role("alert")).to_contain_text("only its owners (ops-lead (backup finance))")
    finally:
        other.close()
    assert len(service.ledger.active_pauses()) == 1

    page.get_by_label("Why it is safe to go on").fill("duplicates voided")
    page.get_by_role("button", name="Lift the pause on team onboarding").click()
    expect(page.get_by_role("status")).to_contain_text("Lifted")
    assert service.ledger.active_pauses() == []
    lifted = [(e.actor, e.to_state, json.loads(e.detail)["reason"]) for e in service.ledger.pause_events()]
    assert lifted == [("alice", "paused", "invoices doubled"), ("alice", "lifted", "duplicates voided")]
