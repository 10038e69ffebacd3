"""Arguments over Guard's limits, sent to the approval service as a reviewer's edit, get a clear 4xx over HTTP
and decide nothing (`policies/onboarding.yaml`: sam holds `support`, which the welcome email needs)."""

from __future__ import annotations

import re

import httpx
import pytest
from server_support import Service

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("levels", "status"), [(65, 422), (1000, 400), (5000, 400)])
async def test_an_edit_nested_deeper_than_the_limit_is_refused_with_a_4xx_and_decides_nothing(
    service: Service, client: httpx.AsyncClient, levels: int, status: int
) -> None:
    """Just over the limit: 422 naming the depth (it used to be accepted). A thousand levels and more: the
    JSON parser refuses the body first (400); never a 500, and nothing is decided either way."""
    approval_id = service.waiting()
    shown = (await client.get(f"/api/approvals/{approval_id}", headers=service.auth("sam"))).json()
    deep = "[" * levels + "]" * levels
    body = (
        f'{{"decision": "approve", "args_hash": "{shown["args_hash"]}", '
        f'"edited_args": {{"to": "ada@example.com", "workspace_id": "ws_1", "note": {deep}}}}}'
    )
    response = await client.post(
        f"/api/approvals/{approval_id}/decision",
        content=body,
        headers={**service.auth("sam"), "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert ("more than 64 levels deep" if status == 422 else "parsing the body") in response.text
    assert service.ledger.decisions_of(approval_id) == []
    after = service.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending" and after.approved_args_hash is None
    assert service.sent == []


async def _page_form(client: httpx.AsyncClient, service: Service, approval_id: str) -> dict[str, str]:
    """sam signed in on the page; the decision form's hidden fields for the waiting approval."""
    assert (await client.post("/login", data={"token": service.tokens["sam"]})).status_code == 303
    page = (await client.get(f"/approvals/{approval_id}")).text
    found = {name: re.search(rf'name="{name}" value="([^"]*)"', page) for name in ("csrf_token", "args_hash")}
    assert all(found.values()), "the decision form's hidden fields are missing"
    return {name: match.group(1) for name, match in found.items() if match is not None} | {"decision": "approve"}


def _nothing_decided(service: Service, approval_id: str) -> None:
    assert service.ledger.decisions_of(approval_id) == []
    after = service.ledger.get_approval(approval_id)
    assert after is not None and after.state == "pending" and after.approved_args_hash is None
    assert service.sent == []


async def test_a_page_edit_nested_thousands_of_levels_deep_is_refused_with_a_4xx_not_a_500(
    service: Service, client: httpx.AsyncClient
) -> None:
    """The page's text area takes 64 KiB: 5,000 nested objects fit, and the JSON parser gives up on them with a
    RecursionError (not a ValueError). The edit is refused like any other unreadable edit, and nothing is decided."""
    approval_id = service.waiting()
    form = await _page_form(client, service, approval_id)
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    response = await client.post(f"/approvals/{approval_id}/decision", data=form | {"edited_args": deep})
    assert response.status_code == 422, response.text
    assert "nested too deep" in response.text
    _nothing_decided(service, approval_id)


@pytest.mark.parametrize("surface", ["api", "page"])
async def test_an_edit_holding_a_lone_surrogate_is_refused_with_422_and_decides_nothing(
    service: Service, client: httpx.AsyncClient, surface: str
) -> None:
    """JSON may spell a lone surrogate (`"\\ud800"`), which no UTF-8 text can hold: such an edit is arguments JSON
    cannot hold exactly, refused with 422 naming the field (it was a 500 from the ledger's encoder)."""
    approval_id = service.waiting()
    edited = '{"to": "\\ud800@example.com", "workspace_id": "ws_1"}'
    if surface == "api":
        shown = (await client.get(f"/api/approvals/{approval_id}", headers=service.auth("sam"))).json()
        response = await client.post(
            f"/api/approvals/{approval_id}/decision",
            content=f'{{"decision": "approve", "args_hash": "{shown["args_hash"]}", "edited_args": {edited}}}',
            headers={**service.auth("sam"), "Content-Type": "application/json"},
        )
    else:
        form = await _page_form(client, service, approval_id)
        response = await client.post(f"/approvals/{approval_id}/decision", data=form | {"edited_args": edited})
    assert response.status_code == 422, response.text
    assert "lone surrogate" in response.text and "to" in response.text
    _nothing_decided(service, approval_id)
