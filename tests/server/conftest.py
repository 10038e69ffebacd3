"""The approval service on a real ledger (a SQLite file and a PostgreSQL database: every test that asks for `service`
runs on both backends), with approvals made by a real Guard in defer mode.

`policies/onboarding.yaml`: `email.send_welcome` needs role `support`; reviewers sam [support], alice [finance],
ops-lead [finance, support]. maria is a reviewer of growth only. The agent asks as `requester`, who is also
given a token (holding no role), and `sam` asks in `asked_by_sam` (he holds the role, so only self-approval
stops him).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from server_support import POLICIES, SHARED_KEY, Service, serving

from guard.ledger import Ledger
from guard.server import create_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def service_policies(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The policy directory the service reads: the demo policies, or for a test marked `operators` a copy where
    olga holds the `operator` role and `email.send_welcome` names owners of its own (`owners: {owner: sam, backup:
    support}`). A test module may give it a copy of its own instead."""
    if request.node.get_closest_marker("operators") is None:
        return POLICIES
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    path = target / "onboarding.yaml"
    text = path.read_text()
    text = text.replace("  ops-lead: [finance, support]\n", "  ops-lead: [finance, support]\n  olga: [operator]\n", 1)
    text = text.replace(
        "    tools: [email.send_welcome]\n",
        "    tools: [email.send_welcome]\n    owners: {owner: sam, backup: support}\n",
        1,
    )
    path.write_text(text)
    return target


@pytest.fixture
def olga(service: Service) -> str:
    """The operator of the `operators` policies, with a token of her own."""
    service.tokens["olga"] = service.ledger.create_token("olga", by="test")[1]
    return "olga"


@pytest.fixture
def service_options() -> dict[str, Any]:
    """More keyword arguments for `create_app` (a test module may override this fixture)."""
    return {}


@pytest.fixture
def shared_key(ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL, the hashing key every process of the deployment is given (GUARD_SECRET_KEY, inherited by the
    subprocesses a test starts); a SQLite file makes its own key file beside it."""
    if not ledger_url.startswith("sqlite"):
        monkeypatch.setenv("GUARD_SECRET_KEY", SHARED_KEY)


@pytest.fixture
def service(
    ledger_url: str, shared_key: None, service_policies: Path, service_options: dict[str, Any]
) -> Iterator[Service]:
    ledger = Ledger(ledger_url)
    # `newcomer` holds a token but no role anywhere until a test writes one into a policy.
    tokens = {
        name: ledger.create_token(name, by="test")[1]
        for name in ("sam", "alice", "ops-lead", "maria", "onboarding-agent", "newcomer")
    }
    app = create_app(ledger_url, service_policies, session_secret=b"s" * 32, **service_options)
    try:
        yield Service(app, ledger, ledger_url, tokens, [])
    finally:
        app.state.desk.ledger.close()
        ledger.close()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over HTTP through httpx's ASGI transport."""
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def live_url(service: Service) -> Iterator[str]:
    """The service's app on a real uvicorn server on loopback."""
    with serving(service.app) as url:
        yield url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from server_figures import FIGURES

    if FIGURES:
        line = ", ".join(f"{k} {v}" for k, v in sorted(FIGURES.items()))
        terminalreporter.write_line(f"approval service figures: {line}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the page tests of one module (imported only by the tests that ask)."""
    from browser_support import ChromiumUnavailable, launch_chromium
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except ChromiumUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield chromium
        finally:
            chromium.close()
