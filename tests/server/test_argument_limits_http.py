"""Arguments over Guard's limits, sent to the approval service as a reviewer's edit, get a clear 4xx over HTTP
and decide nothing (`policies/onboarding.yaml`: sam holds `support`, which the welcome email needs)."""

from __future__ import annotations

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
