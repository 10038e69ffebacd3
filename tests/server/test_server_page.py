"""The reviewer page over HTTP (ASGI transport, cookies kept by httpx): sign in, queue, decide, CSRF."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from server_support import WELCOME, Service

from guard.canonical import args_hash

pytestmark = pytest.mark.anyio


async def sign_in(client: httpx.AsyncClient, service: Service, reviewer: str) -> httpx.Response:
    return await client.post("/login", data={"token": service.tokens[reviewer]})


def field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field on the page"
    return found.group(1)


async def test_signing_in_sets_a_strict_httponly_session_and_shows_the_queue(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    assert (await client.get("/")).headers["location"] == "/login"
    login = await client.get("/login")
    assert "autofocus" in login.text and '<label for="token">' in login.text
    signed = await sign_in(client, service, "sam")
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    queue = await client.get("/")
    assert queue.status_code == 200 and f'href="/approvals/{approval_id}"' in queue.text
    assert (
        queue.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in queue.headers["content-security-policy"]
    )


async def test_a_bad_token_does_not_sign_in(service: Service, client: httpx.AsyncClient) -> None:
    refused = await client.post("/login", data={"token": "gtk_wrong"})
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert (await client.get("/")).status_code == 303


async def test_approving_through_the_form_decides_and_the_page_says_so(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    await sign_in(client, service, "sam")
    page = (await client.get(f"/approvals/{approval_id}")).text
    assert "ada@example.com" in page and "Approve these exact arguments" in page
    done = await client.post(
        f"/approvals/{approval_id}/decision",
        data={
            "csrf_token": field(page, "csrf_token"),
            "args_hash": field(page, "args_hash"),
            "decision": "approve",
            "reason": "checked the address",
        },
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?done=approved")
    after = await client.get(done.headers["location"])
    assert "Approved: the call may run now." in after.text
    record = service.ledger.get_approval(approval_id)
    assert record is not None and record.state == "approved" and record.decided_by == '["sam"]'


async def test_approving_edited_arguments_through_the_form_binds_to_the_edit(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    await sign_in(client, service, "sam")
    page = (await client.get(f"/approvals/{approval_id}")).text
    assert '<textarea id="edited-args" name="edited_args"' in page and "Approve the edited arguments" in page
    form = {"csrf_token": field(page, "csrf_token"), "args_hash": field(page, "args_hash"), "decision": "approve"}
    broken = await client.post(f"/approvals/{approval_id}/decision", data=form | {"edited_args": "{to:"})
    assert broken.status_code == 422 and "not JSON" in broken.text
    edited = {**WELCOME, "to": "billing@example.com"}
    done = await client.post(f"/approvals/{approval_id}/decision", data=form | {"edited_args": json.dumps(edited)})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=approved")
    shown = (await client.get(done.headers["location"])).text
    assert "as edited by a reviewer" in shown and "billing@example.com" in shown and "ada@example.com" in shown
    record = service.ledger.get_approval(approval_id)
    assert record is not None and record.state == "approved" and record.approved_args_hash == args_hash(edited)


async def test_rejecting_through_the_form_without_a_reason_is_refused(
    service: Service, client: httpx.AsyncClient
) -> None:
    approval_id = service.waiting()
    await sign_in(client, service, "sam")
    page = (await client.get(f"/approvals/{approval_id}")).text
    refused = await client.post(
        f"/approvals/{approval_id}/decision",
        data={"csrf_token": field(page, "csrf_token"), "args_hash": field(page, "args_hash"), "decision": "reject"},
    )
    assert refused.status_code == 422 and "reason" in refused.text
    assert service.ledger.decisions_of(approval_id) == []


@pytest.mark.parametrize(
    "attack", ["no csrf token", "wrong csrf token", "another session's token", "cross-site origin", "no session"]
)
async def test_a_forged_form_post_is_refused_and_nothing_is_decided(
    service: Service, client: httpx.AsyncClient, attack: str
) -> None:
    approval_id = service.waiting()
    # Another session of another reviewer: its CSRF token is valid there, and must be useless here.
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://testserver")
    async with other:
        await sign_in(other, service, "ops-lead")
        foreign = field((await other.get(f"/approvals/{approval_id}")).text, "csrf_token")
    await sign_in(client, service, "sam")
    page = (await client.get(f"/approvals/{approval_id}")).text
    data = {"args_hash": field(page, "args_hash"), "decision": "approve", "csrf_token": field(page, "csrf_token")}
    headers: dict[str, str] = {}
    if attack == "no csrf token":
        del data["csrf_token"]
    elif attack == "wrong csrf token":
        data["csrf_token"] = "0" * 64
    elif attack == "another session's token":
        data["csrf_token"] = foreign
    elif attack == "cross-site origin":
        headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    else:
        client.cookies.clear()
    refused = await client.post(f"/approvals/{approval_id}/decision", data=data, headers=headers)
    assert refused.status_code in (401, 403), refused.text
    assert service.ledger.decisions_of(approval_id) == []


async def test_revoking_the_token_ends_the_page_session(service: Service, client: httpx.AsyncClient) -> None:
    await sign_in(client, service, "sam")
    assert (await client.get("/")).status_code == 200
    [token] = [t for t in service.ledger.list_tokens() if t.reviewer == "sam"]
    service.ledger.revoke_token(token.token_id, by="test")
    assert (await client.get("/")).headers["location"] == "/login"


async def test_a_forged_session_cookie_is_not_a_session(service: Service, client: httpx.AsyncClient) -> None:
    await sign_in(client, service, "alice")
    value = client.cookies["guard_session"]
    payload, _, signature = value.rpartition(".")
    client.cookies.set("guard_session", f"{payload}x.{signature}")
    assert (await client.get("/")).status_code == 303
