"""A staged restart on the reviewer page in a real headless Chromium over a real uvicorn server, with each role:
the owner's backup (alice, by the finance role) starts it from the lift form, a plain reviewer (sam) sees it and
cannot confirm, an operator (olga) confirms the held stage, and nobody without a session reaches the page. Every
step is checked in the ledger too."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from server_support import Service

from guard import CallDenied, Guard, TeamPaused

pytestmark = pytest.mark.operators


def _signed_in(browser: Browser, live_url: str, service: Service, reviewer: str) -> tuple[BrowserContext, Page]:
    ctx = browser.new_context(base_url=live_url)
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    page.goto("/login")
    page.get_by_label("Reviewer token").fill(service.tokens[reviewer])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"signed in as {reviewer}")).to_be_visible()
    page.goto("/pauses")
    return ctx, page


def _echo(**kw: Any) -> dict[str, Any]:
    return kw


def _find(service: Service) -> str:
    guard = Guard(policies=service.app.state.desk.policies, db=service.url, log_level="error")
    try:
        tool = guard.tool(_echo, name="crm.find_contact")
        try:
            with guard.run("onboarding"):
                tool(email="ada@example.com")
        except (CallDenied, TeamPaused):
            return "held"
        return "ran"
    finally:
        guard.close()


def test_a_staged_restart_is_started_on_the_page_confirmed_by_an_operator_and_a_plain_reviewer_only_watches(
    service: Service, browser: Browser, live_url: str
) -> None:
    service.tokens["olga"] = service.ledger.create_token("olga", by="test")[1]
    service.ledger.pause("team", "onboarding", reason="invoices doubled", by="ops-lead")
    expect.set_options(timeout=10_000)
    alice_ctx, alice = _signed_in(browser, live_url, service, "alice")
    sam_ctx, sam = _signed_in(browser, live_url, service, "sam")
    olga_ctx, olga = _signed_in(browser, live_url, service, "olga")
    nobody = browser.new_context(base_url=live_url)
    try:
        alice.get_by_label("Why it is safe to go on").fill("mapping fixed")
        alice.get_by_label("Restart in stages").fill("1,5")
        alice.get_by_role("button", name="Lift the pause on team onboarding").click()
        expect(alice.get_by_role("status")).to_contain_text("Staged restart started")
        expect(alice.get_by_role("table", name="Staged restarts")).to_contain_text("passing at stage 1")
        [restart] = service.ledger.restarts()
        assert (restart["started_by"], restart["stages"], restart["state"]) == ("alice", [1, 5], "passing")

        assert [_find(service), _find(service)] == ["ran", "held"]  # one call, then the pause holds again

        sam.reload()
        expect(sam.get_by_role("table", name="Staged restarts")).to_contain_text("holding at stage 1")
        expect(sam.get_by_role("button", name="Confirm stage 1")).to_have_count(0)
        expect(sam.get_by_text("only its owners and operators may confirm the stage")).to_be_visible()

        olga.reload()
        olga.get_by_label("What you checked").fill("one invoice, one reminder")
        olga.get_by_role("button", name="Confirm stage 1").click()
        expect(olga.get_by_role("status")).to_contain_text("Stage confirmed")
        expect(olga.get_by_role("table", name="Staged restarts")).to_contain_text("passing at stage 2")
        steps = [(s["by"], s["to"]) for s in service.ledger.restart_events(restart["id"])]
        assert steps == [("alice", "passing"), ("guard", "holding"), ("olga", "passing")]

        anon = nobody.new_page()
        anon.goto("/pauses")
        expect(anon).to_have_url(f"{live_url}/login")
        response = anon.request.post(
            f"{live_url}/pauses/confirm", form={"team": "onboarding", "reason": "me", "csrf_token": "x"}
        )
        assert response.status == 401
        assert [(s["by"], s["to"]) for s in service.ledger.restart_events(restart["id"])] == steps
    finally:
        for ctx in (alice_ctx, sam_ctx, olga_ctx, nobody):
            ctx.close()
