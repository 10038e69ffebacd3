"""The incident page in headless Chromium (Debian's), on a live server over a real ledger: the list, filters,
verdicts (picked records and all shown), notes, and the roles: a reviewer tags, only an operator closes, a
reviewer of another team sees nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from incident_support import bad_sync
from playwright.sync_api import Browser, BrowserContext, Page, expect
from server_support import Service

from guard.incidents import IncidentBook, Scope


@pytest.fixture
def page(browser: Browser, live_url: str) -> Iterator[Page]:
    ctx: BrowserContext = browser.new_context(base_url=live_url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(10_000)
    expect.set_options(timeout=10_000)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


@pytest.fixture
def incident(service: Service, tmp_path: Path) -> str:
    bad_sync(service, tmp_path / "systems")
    return (
        IncidentBook(service.ledger)
        .open(
            Scope(team="contacts", source_event_ids=("sync-1",)), title="Contact sync wrote churned", opened_by="olga"
        )
        .incident_id
    )


def _sign_in(page: Page, service: Service, reviewer: str) -> None:
    page.goto("/login")
    page.get_by_label("Reviewer token").fill(service.tokens[reviewer])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"signed in as {reviewer}")).to_be_visible()


def test_a_reviewer_finds_the_incident_filters_its_records_and_judges_picked_ones_and_all_shown(
    service: Service, page: Page, incident: str
) -> None:
    _sign_in(page, service, "rita")
    page.goto("/incidents")
    page.get_by_role("link", name="Contact sync wrote churned").click()
    expect(page.locator("#summary")).to_contain_text("24 records changed in 2 systems")
    page.get_by_label("System").fill("crm")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("td.verdict")).to_have_count(12)
    boxes = page.get_by_role("checkbox")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_label("Verdict", exact=True).select_option("safe")
    page.get_by_role("button", name="Judge the picked records").click()
    expect(page.get_by_role("status")).to_have_text("Verdicts recorded.")
    expect(page.locator("#summary")).to_contain_text("0 wrong, 2 safe")
    page.get_by_label("Verdict now (none: not judged)").select_option("none")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("td.verdict")).to_have_count(10)
    page.get_by_label("Verdict", exact=True).select_option("wrong")
    page.get_by_label("Why (kept with the verdicts)").fill("paid plans")
    page.get_by_role("button", name="Judge all 10 shown").click()
    expect(page.locator("#summary")).to_contain_text("10 wrong, 2 safe, 0 unclear, 12 not yet judged")
    verdicts = IncidentBook(service.ledger).book.verdicts(incident)
    assert sorted(v["verdict"] for v in verdicts.values()) == ["safe"] * 2 + ["wrong"] * 10
    assert {v["judged_by"] for v in verdicts.values()} == {"rita"}


def test_a_note_lands_in_the_log_a_reviewer_cannot_close_and_an_operator_can(
    service: Service, browser: Browser, page: Page, live_url: str, incident: str
) -> None:
    _sign_in(page, service, "rita")
    page.goto(f"/incidents/{incident}")
    page.get_by_label("Note for the log").fill("Support saw three complaints about churn emails")
    page.get_by_role("button", name="Add to the log").click()
    expect(page.locator("#log")).to_contain_text("rita (note): Support saw three complaints")
    expect(page.get_by_role("button", name="Close the incident")).to_have_count(0)
    ctx = browser.new_context(base_url=live_url)
    try:
        olga = ctx.new_page()
        _sign_in(olga, service, "olga")
        olga.goto(f"/incidents/{incident}")
        olga.get_by_label("How it ended").fill("statuses restored")
        olga.get_by_role("button", name="Close the incident").click()
        expect(olga.get_by_role("status")).to_have_text("Closed.")
        expect(olga.locator("#log")).to_contain_text("closed: statuses restored")
    finally:
        ctx.close()
    found = IncidentBook(service.ledger).get(incident)
    assert (found.state, found.closed_by) == ("closed", "olga")


def test_a_reviewer_of_another_team_sees_no_incidents_and_the_page_of_one_is_not_found(
    service: Service, page: Page, incident: str
) -> None:
    _sign_in(page, service, "maria")
    page.goto("/incidents")
    expect(page.get_by_text("No incidents.")).to_be_visible()
    answer = page.goto(f"/incidents/{incident}")
    assert answer is not None and answer.status == 404


def test_an_operator_opens_an_incident_from_the_page_and_a_time_it_cannot_read_is_shown_back_with_the_form_kept(
    service: Service, page: Page, tmp_path: Path
) -> None:
    bad_sync(service, tmp_path / "systems")
    _sign_in(page, service, "olga")
    page.goto("/incidents")
    form = page.get_by_role("form", name="Open an incident")
    form.get_by_label("What went wrong").fill("Sync wrote churned")
    form.get_by_label("Team").select_option("contacts")
    form.get_by_label("Source events (space separated)").fill("sync-1")
    form.get_by_label("From").fill("last tuesday")
    form.get_by_role("button", name="Open the incident").click()
    expect(page.get_by_role("alert")).to_contain_text("not a time: 'last tuesday'")
    assert IncidentBook(service.ledger).list() == []
    form = page.get_by_role("form", name="Open an incident")
    expect(form.get_by_label("Source events (space separated)")).to_have_value("sync-1")
    form.get_by_label("From").fill("2h")
    form.get_by_role("button", name="Open the incident").click()
    expect(page.get_by_role("status")).to_have_text("Incident opened.")
    expect(page.locator("#summary")).to_contain_text("24 records changed in 2 systems")
    [opened] = IncidentBook(service.ledger).list()
    assert (opened.title, opened.team, opened.opened_by, opened.scope.source_event_ids) == (
        "Sync wrote churned",
        "contacts",
        "olga",
        ("sync-1",),
    )


def test_a_reviewer_who_may_only_tag_has_no_open_form_and_a_post_of_one_is_refused_and_records_nothing(
    service: Service, page: Page, live_url: str, tmp_path: Path
) -> None:
    bad_sync(service, tmp_path / "systems")
    _sign_in(page, service, "rita")
    page.goto("/incidents")
    expect(page.get_by_role("form", name="Open an incident")).to_have_count(0)
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    answer = page.request.post(
        "/incidents",
        form={"csrf_token": csrf, "title": "mine", "team": "contacts", "source_events": "sync-1"},
        headers={"Origin": live_url},
    )
    assert answer.status == 403 and "only the owners and operators of team contacts" in answer.text()
    assert IncidentBook(service.ledger).list() == []
