"""Block Kit for Slack: the message of a call waiting for approval (with Approve and Reject buttons when the team
decides from Slack), the reject-reason dialog, and the message that replaces it once decided.

Every value from the ledger goes through `md` (control characters escaped, `&`, `<`, `>` entity-encoded): a tool
name or an argument can add neither a line, a link nor a mention of its own. Arguments are shown as the ledger
stores them (secret fields `[REDACTED]`), cut at `ARGS_SHOWN` characters with a pointer to the page.
Each button carries the approval id and the exact argument hash the message shows: a decision binds to it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from guard.ledger import ApprovalRecord
from guard.printable import printable

__all__ = [
    "APPROVE",
    "ARGS_SHOWN",
    "REASON",
    "REJECT",
    "REJECT_VIEW",
    "approval_blocks",
    "button_value",
    "md",
    "on_table",
    "outcome_blocks",
    "reason_view",
]

APPROVE = "guard_approve"
REJECT = "guard_reject"
REJECT_VIEW = "guard_reject_reason"
REASON = "reason"  # block id and action id of the reason input in the dialog
ARGS_SHOWN = 2500  # a section's text holds at most 3000 characters


def md(value: object) -> str:
    """A value inside Slack mrkdwn: control characters escaped and `&`, `<`, `>` entity-encoded."""
    return printable(str(value)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def button_value(approval_id: str, args_hash: str) -> str:
    return json.dumps({"approval_id": approval_id, "args_hash": args_hash}, separators=(",", ":"))


def on_table(approval: ApprovalRecord) -> tuple[str, str]:
    """The arguments (as stored: secrets redacted) and hash a decision binds to now: a reviewer's edit when one is
    on the table, else the agent's request."""
    if approval.approved_args_json is not None and approval.approved_args_hash:
        return approval.approved_args_json, approval.approved_args_hash
    return approval.args_json, approval.args_hash


def _args_text(approval: ApprovalRecord) -> str:
    shown = json.dumps(json.loads(on_table(approval)[0]), indent=1, ensure_ascii=False, sort_keys=True)
    cut = len(shown) > ARGS_SHOWN
    return f"```{md(shown[:ARGS_SHOWN])}```" + ("\n_(cut short: the page shows them whole)_" if cut else "")


def approval_blocks(approval: ApprovalRecord, link: str, *, buttons: bool) -> list[dict[str, Any]]:
    """The waiting call: tool, rule, roles, quorum, expiry, the redacted arguments on the table and their hash (a
    reviewer's edit when one waits, see `on_table`), a link to the page; with `buttons`, Approve and Reject bound
    to the approval and that hash."""
    expires = datetime.fromtimestamp(approval.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"*Approval needed* in team *{md(approval.team)}*: `{md(approval.tool)}` "
        f"(rule *{md(approval.rule or 'none')}*) waits for {approval.quorum} reviewer(s) with role "
        f"*{md(', '.join(approval.role_list))}*. Asked by {md(approval.requested_by)}, expires {expires}."
    )
    elements: list[dict[str, Any]] = []
    args_hash = on_table(approval)[1]
    value = button_value(approval.approval_id, args_hash)
    if buttons:
        elements += [
            {
                "type": "button",
                "action_id": APPROVE,
                "style": "primary",
                "value": value,
                "text": {"type": "plain_text", "text": "Approve"},
            },
            {
                "type": "button",
                "action_id": REJECT,
                "style": "danger",
                "value": value,
                "text": {"type": "plain_text", "text": "Reject"},
            },
        ]
    elements.append(
        {
            "type": "button",
            "action_id": "guard_open_page",
            "url": link,
            "text": {"type": "plain_text", "text": "Open the page"},
        }
    )
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Arguments* (secrets redacted)\n" + _args_text(approval)},
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"argument hash `{md(args_hash)}` · "
                    f"run `{md(approval.run_id)}` · approval `{md(approval.approval_id)}`",
                }
            ],
        },
        {"type": "actions", "block_id": f"guard:{approval.approval_id}", "elements": elements},
    ]


def reason_view(approval: ApprovalRecord, metadata: str) -> dict[str, Any]:
    """The dialog asking a rejecting reviewer why; `metadata` comes back with the submission."""
    return {
        "type": "modal",
        "callback_id": REJECT_VIEW,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": "Reject the call"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"`{md(approval.tool)}` in team *{md(approval.team)}*: the agent is told why.",
                },
            },
            {
                "type": "input",
                "block_id": REASON,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": 2000,
                },
            },
        ],
    }


def outcome_blocks(approval: ApprovalRecord, outcome: str, link: str) -> dict[str, Any]:
    """What replaces the message once a reviewer decided: the outcome and who decided (`outcome`: mrkdwn whose
    values the caller passed through `md`), no buttons."""
    text = (
        f"`{md(approval.tool)}` in team *{md(approval.team)}* (run `{md(approval.run_id)}`): {outcome}. "
        f"<{link}|Open the page>"
    )
    return {
        "replace_original": True,
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }
