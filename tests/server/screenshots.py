"""Screenshots of the reviewer page for the README: `make screenshots` (`python tests/server/screenshots.py`).

Seeds a fresh ledger in a temporary directory with onboarding runs whose first invoice is over the policy's
limit (`big-invoice`: over 500.00 EUR waits for `finance`), serves the approval service on loopback, signs in
as alice (finance) in Debian's headless Chromium and saves docs/screenshots/sign-in.png, queue.png and
approval.png. Nothing outside the temporary directory and docs/screenshots/ is written.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from browser_support import launch_chromium, serving, waiting_invoice
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright
from server_support import POLICIES, REPO

from guard.ledger import Ledger, upgrade
from guard.server import create_app

OUT = REPO / "docs" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1200, "height": 420}  # full-page shots grow to fit


def seed(db_path: Path) -> tuple[str, str]:
    """Two invoices waiting for finance; the token of alice. Returns (approval id of the first, token)."""
    upgrade(f"sqlite:///{db_path}")
    ledger = Ledger(f"sqlite:///{db_path}")
    try:
        _, token = ledger.create_token("alice", by="screenshots")
    finally:
        ledger.close()
    first = waiting_invoice(f"sqlite:///{db_path}")
    waiting_invoice(
        f"sqlite:///{db_path}",
        event_id="evt_signup_1002",
        customer={"email": "grace@example.com", "name": "Grace Hopper", "company": "Compiler Works"},
        invoice_args={
            "contact_id": "ct_grace_1002",
            "amount_cents": 68_000,
            "currency": "EUR",
            "memo": "Team plan, 12 seats, first quarter",
        },
    )
    return first, token


def shoot(page: Page, name: str) -> Path:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="guard-screens-") as tmp:
        db_path = Path(tmp) / "guard.db"
        approval_id, token = seed(db_path)
        app = create_app(f"sqlite:///{db_path}", POLICIES)
        try:
            with serving(app) as url, sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                context = browser.new_context(base_url=url, viewport=VIEWPORT)
                page = context.new_page()
                page.goto("/login")
                saved.append(shoot(page, "sign-in"))
                page.get_by_label("Reviewer token").fill(token)
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("heading", name="Waiting for you (2)")).to_be_visible()
                saved.append(shoot(page, "queue"))
                page.locator(f'a[href="/approvals/{approval_id}"]').click()
                expect(page.get_by_role("heading", name="billing.create_invoice (pending)")).to_be_visible()
                expect(page.get_by_label("Note (optional)")).to_be_focused()
                saved.append(shoot(page, "approval"))
                browser.close()
        finally:
            app.state.desk.ledger.close()
    for path in saved:
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
