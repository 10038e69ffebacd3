"""`POST /slack/actions`: approve and reject from Slack, with every check of the page.

What Slack posts here (the Slack app's Interactivity request URL), form-encoded `payload=<JSON>`:
- `block_actions`: a press of Approve or Reject in a waiting call's message (`guard.notify.blocks`). Approve is
  decided at once; Reject opens a dialog asking for the reason (`views.open`, with the team's bot token).
- `view_submission`: that dialog submitted; the reason comes with it and the rejection is decided.

Each request is refused before anything of it is read unless it is signed the way Slack signs: `X-Slack-Signature:
v0=<hex HMAC-SHA256 over "v0:" + X-Slack-Request-Timestamp + ":" + body>` with the signing secret of a team's
Slack app (policy `slack.signing_secret_env`: the secret stays in the environment), made within five minutes of
now. Unsigned, forged and stale requests get 401; a signature seen before (a replay within the five minutes) gets
409, on whichever replica it arrives: each accepted signature is recorded in the ledger (`seen_requests`, whose key
is the signature) before anything of the request is acted on, and kept until its timestamp is long past. While the
ledger cannot be reached nothing is accepted (503). A request signed with one team's secret decides only that
team's approvals: another team's approval gets the answer of an unknown id (404 `not_found`), so no request learns
that it exists.

The Slack user is the reviewer whose Slack id they are in the team's policy (`reviewers:`, `slack: U...`; one id is
one name in every team, or the later team's policy is refused at load: `guard.policy.PolicySet`); the
decision then goes through `Desk.decide` exactly as from the page: role, quorum, no self-approval, the argument
hash the message showed (carried by the button), expiry. Its outcome replaces the message (`response_url`); a
refusal is told to the reviewer alone (an ephemeral reply, or the dialog's error). Slack needs an answer within
three seconds: the answer is 200 once the request was verified, with the outcome as JSON for anyone reading it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from structlog.typing import FilteringBoundLogger

from guard.ledger import ApprovalRecord
from guard.logs import make_logger
from guard.notify.blocks import APPROVE, REASON, REJECT, REJECT_VIEW, md, outcome_blocks, reason_view
from guard.policy import Slack
from guard.server.desk import Desk, DeskError, Reviewer
from guard.server.slack_api import SlackApi, SlackApiError

__all__ = ["MAX_AGE", "SIGNATURE", "TIMESTAMP", "slack_router", "slack_signature", "verified_teams"]

SIGNATURE = "X-Slack-Signature"
TIMESTAMP = "X-Slack-Request-Timestamp"
MAX_AGE = 300.0  # seconds: Slack's own advice
# How long after its timestamp a received signature is remembered. A request is accepted until MAX_AGE after its
# timestamp; remembering it three times as long keeps a replay refused while the replicas' clocks (the one that
# accepts it, the one that prunes it) disagree by less than ten minutes between them.
_REMEMBER = 3 * MAX_AGE


def slack_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """`v0=` + the hex HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing secret, as Slack signs."""
    return "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


class SlackRefused(Exception):
    """A request refused before it is read: its status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def verified_teams(apps: Mapping[str, Slack], headers: Mapping[str, str], body: bytes, now: float) -> frozenset[str]:
    """The teams whose Slack signing secret signed `body` within `MAX_AGE` of `now`.

    Raises:
        SlackRefused: 401 `unsigned` (no signature or timestamp), `stale` (too old or from the future), `forged`
            (no configured secret signs it).
    """
    signature, stamp = headers.get(SIGNATURE.lower()), headers.get(TIMESTAMP.lower())
    if not signature or not stamp:
        raise SlackRefused(401, "unsigned", f"{SIGNATURE} and {TIMESTAMP} are required")
    try:
        age = abs(now - int(stamp))
    except ValueError:
        raise SlackRefused(401, "unsigned", f"{TIMESTAMP} is not a number of seconds") from None
    if age > MAX_AGE:
        raise SlackRefused(401, "stale", f"the request was signed {age:.0f}s from now; at most {MAX_AGE:.0f}s")
    teams = frozenset(
        team
        for team, app in apps.items()
        if (secret := app.signing_secret()) is not None
        and hmac.compare_digest(slack_signature(secret, stamp, body), signature)
    )
    if not teams:
        raise SlackRefused(401, "forged", "no team's Slack signing secret signs this request")
    return teams


def slack_router(desk: Desk, api: SlackApi, page_url: str, log: FilteringBoundLogger | None = None) -> APIRouter:
    """The `/slack/actions` route over `desk`; outbound calls go through `api`; links point at `page_url`."""
    router = APIRouter(tags=["slack"])
    logger = log or make_logger("warning")
    base = page_url.rstrip("/")

    @router.post("/slack/actions", include_in_schema=False)
    async def actions(request: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
        body = await request.body()
        now = time.time()
        apps = {team: p.slack for team, p in desk.policies.policies.items() if p.slack is not None}
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            teams = verified_teams(apps, headers, body, now)
        except SlackRefused as refused:
            return JSONResponse({"detail": refused.message, "code": refused.code}, status_code=refused.status)
        first = await run_in_threadpool(
            desk.ledger.first_sighting,
            "slack",
            headers[SIGNATURE.lower()],
            expires_at=int(headers[TIMESTAMP.lower()]) + _REMEMBER,
            now=now,
        )
        if not first:
            return JSONResponse(
                {"detail": "this signed request was already received", "code": "replayed"}, status_code=409
            )
        try:
            payload: Any = json.loads(parse_qs(body.decode())["payload"][0])
            kind = payload["type"]
        except (UnicodeDecodeError, KeyError, IndexError, TypeError, ValueError, RecursionError):
            return JSONResponse(
                {"detail": "a form field `payload` holding Slack's JSON is required", "code": "invalid"},
                status_code=400,
            )
        handler = _Interaction(desk, api, base, apps, teams, logger)
        if kind == "block_actions":
            return await run_in_threadpool(handler.button, cast(dict[str, Any], payload))
        if kind == "view_submission":
            return await run_in_threadpool(handler.submission, cast(dict[str, Any], payload))
        return JSONResponse({"detail": f"interactions of type {kind!r} are not Guard's", "code": "ignored"})

    return router


class _Interaction:
    """One verified request: who pressed what, and the decision it makes."""

    def __init__(
        self,
        desk: Desk,
        api: SlackApi,
        base: str,
        apps: Mapping[str, Slack],
        teams: frozenset[str],
        log: FilteringBoundLogger,
    ) -> None:
        self.desk, self.api, self.base, self.apps, self.teams, self.log = desk, api, base, apps, teams, log

    def _approval(self, approval_id: str, user_id: str) -> tuple[ApprovalRecord, Reviewer]:
        """The approval and the reviewer the Slack user is in its team.

        An approval of a team whose Slack app did not sign the request gets the answer of an id that does not exist
        (404 `not_found`, the same sentence and fields): a request never learns that another team's approval
        exists. A user of the signing team's workspace whom its policy does not map is refused with 403 (the
        approval is in their own workspace's channel already)."""
        approval = self.desk.ledger.get_approval(approval_id)
        if approval is None or approval.team not in self.teams:
            raise DeskError(404, "not_found", f"no approval {approval_id}", approval_id=approval_id)
        name = self.apps[approval.team].users.get(user_id)
        if name is None:
            raise DeskError(
                403,
                "forbidden",
                f"Slack user {user_id} is not a reviewer of team {approval.team} "
                "(no reviewer has that `slack:` id under the policy's `reviewers:`)",
            )
        return approval, Reviewer(name=name, token_id=f"slack:{user_id}")

    def button(self, payload: dict[str, Any]) -> Response:
        response_url = str(payload.get("response_url") or "")
        try:
            action = payload["actions"][0]
            user_id = str(payload["user"]["id"])
            value = json.loads(action["value"])
            approval_id, args_hash, action_id = str(value["approval_id"]), str(value["args_hash"]), action["action_id"]
        except (KeyError, IndexError, TypeError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
            return JSONResponse({"detail": "not a Guard button", "code": "invalid"}, status_code=400)
        try:
            approval, who = self._approval(approval_id, user_id)
            if action_id == APPROVE:
                return self._decide(approval, who, user_id, "approve", None, args_hash, response_url)
            if action_id == REJECT:
                return self._ask_reason(approval, payload, args_hash, response_url)
            return JSONResponse({"detail": f"unknown action {action_id!r}", "code": "invalid"}, status_code=400)
        except DeskError as err:
            self._tell(
                response_url,
                {"response_type": "ephemeral", "replace_original": False, "text": f"Not decided: {md(err.message)}"},
            )
            return JSONResponse({**err.body(), "status": err.status})

    def _ask_reason(
        self, approval: ApprovalRecord, payload: dict[str, Any], args_hash: str, response_url: str
    ) -> Response:
        token = self.apps[approval.team].bot_token()
        link = f"{self.base}/approvals/{approval.approval_id}"
        if token is None:
            raise DeskError(
                409,
                "no_dialog",
                f"a rejection needs a reason and this team's Slack app has no bot token "
                f"to ask for it: reject on the page, {link}",
            )
        metadata = json.dumps(
            {"approval_id": approval.approval_id, "args_hash": args_hash, "response_url": response_url},
            separators=(",", ":"),
        )
        try:
            self.api.open_view(token, str(payload.get("trigger_id") or ""), reason_view(approval, metadata))
        except SlackApiError as exc:
            raise DeskError(
                502, "slack_unavailable", f"the reason dialog could not be opened ({exc}): reject on the page, {link}"
            ) from None
        return JSONResponse({"approval_id": approval.approval_id, "asked": "reason"})

    def submission(self, payload: dict[str, Any]) -> Response:
        try:
            view = payload["view"]
            if view.get("callback_id") != REJECT_VIEW:
                return JSONResponse({"detail": "not a Guard dialog", "code": "ignored"})
            meta = json.loads(view["private_metadata"])
            user_id = str(payload["user"]["id"])
            reason = str(view["state"]["values"][REASON][REASON].get("value") or "").strip()
            approval_id, args_hash = str(meta["approval_id"]), str(meta["args_hash"])
            response_url = str(meta.get("response_url") or "")
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            return JSONResponse({"detail": "not a Guard dialog", "code": "invalid"}, status_code=400)
        if not reason:
            return JSONResponse({"response_action": "errors", "errors": {REASON: "Say why: the agent is told."}})
        try:
            approval, who = self._approval(approval_id, user_id)
            self._decide(approval, who, user_id, "reject", reason, args_hash, response_url)
        except DeskError as err:
            return JSONResponse({"response_action": "errors", "errors": {REASON: f"Not decided: {err.message}"}})
        return Response(status_code=200)  # an empty 200 closes the dialog

    def _decide(
        self,
        approval: ApprovalRecord,
        who: Reviewer,
        user_id: str,
        decision: str,
        reason: str | None,
        args_hash: str,
        response_url: str,
    ) -> Response:
        done = self.desk.decide(
            who,
            approval.approval_id,
            "approve" if decision == "approve" else "reject",
            reason=reason,
            args_hash=args_hash,
        )
        by = f"{md(who.name)} (<@{md(user_id)}>)"
        if done["state"] == "pending":
            outcome = f"approved by {by}; waits for {done['quorum']} approval(s) in all"
        elif decision == "approve":
            outcome = f"*approved* by {by}"
        else:
            outcome = f"*rejected* by {by}: {md(reason or '')}"
        if done["state"] == "pending":  # the quorum is not met: the buttons stay for the next reviewer
            self._tell(
                response_url,
                {
                    "response_type": "in_channel",
                    "replace_original": False,
                    "text": f"`{md(approval.tool)}`: {outcome}.",
                },
            )
        else:
            self._tell(response_url, outcome_blocks(approval, outcome, f"{self.base}/approvals/{approval.approval_id}"))
        return JSONResponse(done)

    def _tell(self, response_url: str, message: dict[str, Any]) -> None:
        """Tell Slack; a message that cannot be delivered changes no decision (it is logged)."""
        if not response_url:
            return
        try:
            self.api.respond(response_url, message)
        except SlackApiError as exc:
            self.log.warning("Slack message not updated", error=str(exc))
