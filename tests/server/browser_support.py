"""Shared by the browser tests and the screenshot script: Debian's Chromium, a live server, realistic approvals.

Chromium is Debian's package (`/usr/bin/chromium`, installed by `.ci/ensure-chromium` from `make test`);
Playwright's own browser downloads cannot be reached here, so `playwright install` is never run. When Chromium
is missing or cannot start, `launch_chromium` raises `ChromiumUnavailable` naming what to do: the browser
tests fail with it, they never skip.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Error, Playwright
from server_support import POLICIES, healthy

from guard import ApprovalPending, Guard
from guard.testing import poll

CHROMIUM = Path("/usr/bin/chromium")
# Headless on a machine with no display and a closed network: no GPU, no QUIC, no background requests
# (component updates, sync, first-run pages), no sandbox (the tests may run as root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# The onboarding story as the reviewer page shows it: the contact exists, the first invoice is over the
# policy's limit (`big-invoice`: amount_cents > 50000 waits for `finance`).
CUSTOMER = {"email": "ada@example.com", "name": "Ada Lovelace", "company": "Analytical Engines Ltd"}
INVOICE = {
    "contact_id": "ct_ada_1001",
    "amount_cents": 1_250_000,
    "currency": "EUR",
    "memo": "Enterprise plan, 50 seats, annual prepay",
}
PROSPECT_EMAIL = {
    "lead": {"email": "lin@example.org", "segment": "smb", "unsubscribed": False},
    "template": "first-touch",
}


class ChromiumUnavailable(RuntimeError):
    """Debian's Chromium is missing or does not start; the message says how to fix it."""


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, driven by Playwright. Raises ChromiumUnavailable with the fix."""
    if not CHROMIUM.exists():
        raise ChromiumUnavailable(
            f"{CHROMIUM} is missing: run `.ci/ensure-chromium` (as root or with sudo; "
            "`make test` runs it) to install Debian's chromium package"
        )
    try:
        return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
    except Error as exc:
        raise ChromiumUnavailable(f"{CHROMIUM} did not start under Playwright: {exc}") from exc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: FastAPI) -> Generator[str]:
    """A real uvicorn server for `app` on loopback, in a thread; yields its base URL once /health answers."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: not thread.is_alive() or healthy(url), timeout=10, what="uvicorn answering /health")
        assert thread.is_alive(), "uvicorn stopped before it answered /health"
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop"


def _guard(db: str, actor: str) -> Guard:
    return Guard(policies=POLICIES, db=db, actor=actor, approval="defer", log_level="error")


def waiting_invoice(
    db: str,
    *,
    actor: str = "onboarding-agent",
    event_id: str = "evt_signup_1001",
    customer: dict[str, str] = CUSTOMER,
    invoice_args: dict[str, Any] = INVOICE,
) -> str:
    """An onboarding run whose CRM contact exists and whose first invoice waits for `finance`; the approval id."""
    guard = _guard(db, actor)
    try:

        def upsert_contact(**_: Any) -> dict[str, str]:
            return {"contact_id": str(invoice_args["contact_id"])}

        def create_invoice(**_: Any) -> dict[str, str]:
            raise AssertionError("a held invoice must not be created before a reviewer approves it")

        upsert = guard.tool(upsert_contact, name="crm.upsert_contact", external_ids={"contact": "contact_id"})
        invoice = guard.tool(create_invoice, name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
        with (
            pytest.raises(ApprovalPending) as pending,
            guard.run("onboarding", source_event_id=event_id, subject=customer["email"]),
        ):
            upsert(**customer)
            invoice(**invoice_args)
        return pending.value.approval_id
    finally:
        guard.close()


def waiting_prospect_email(db: str) -> str:
    """A growth run whose prospect email waits for `marketing` (a team sam and alice do not review)."""
    guard = _guard(db, "growth-agent")
    try:

        def send(**_: Any) -> dict[str, str]:
            raise AssertionError("a held email must not be sent before a reviewer approves it")

        tool = guard.tool(send, name="email.send_prospect")
        with pytest.raises(ApprovalPending) as pending, guard.run("growth", subject="lin@example.org"):
            tool(**PROSPECT_EMAIL)
        return pending.value.approval_id
    finally:
        guard.close()
