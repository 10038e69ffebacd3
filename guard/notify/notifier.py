"""The notifier: tells each team's channel of calls waiting for approval (again when a reviewer's edit puts new
arguments on the table, perhaps for other roles), of runs that halt, of pauses set or
lifted and of stop rules that trip (these two naming the owners the policy gives the pause point).

It reads the ledger's events after its cursor (`Ledger.notice_events`), so nothing is lost while no notifier
runs: the next pass catches up. Each event is claimed with a row unique on the event before it is sent, and
the row records the outcome: `sent`, `failed` (after its retries: the webhook is dead or refuses), `skipped`
(decided or resolved before the pass reached it). A dead webhook costs the notifier its retries and nothing
else: it never blocks, approves or changes a call. A notifier that dies mid-send leaves its row `sending`; a
later pass takes it over once it is clearly stale and sends it again (at least once: receivers dedupe on
`guard.event_id`). `guard serve` runs it every second; `guard notifications
deliver` runs one pass (cron).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from structlog.typing import FilteringBoundLogger

from guard.ledger import ApprovalRecord, Ledger, NoticeEvent, RunRecord
from guard.logs import make_logger
from guard.notify.blocks import approval_blocks
from guard.notify.webhook import post, target_of
from guard.policy import LivePolicies, Notify, PolicySet
from guard.printable import printable

__all__ = ["Notifier", "NotifyReport"]


@dataclass(slots=True)
class NotifyReport:
    """What one pass did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list[str])


@dataclass(slots=True)
class Notifier:
    """Delivers the teams' notifications from the ledger. `page_url`: the reviewer page's base URL."""

    ledger: Ledger
    source: LivePolicies | PolicySet  # a fixed set, or a directory followed as it changes
    page_url: str
    attempts: int = 3
    backoff: float = 0.2
    timeout: float = 5.0
    batch: int = 200
    log: FilteringBoundLogger = field(default_factory=lambda: make_logger("warning"))

    @property
    def policies(self) -> PolicySet:
        return self.source.current()

    def deliver(self) -> NotifyReport:
        """One pass: first what a dead notifier left `sending`, then the events after the cursor (the cursor
        moves past them)."""
        report = NotifyReport()
        stale_before = time.time() - (self.attempts * (self.timeout + 5 * self.backoff) + 60)
        for notice, event in self.ledger.stuck_notices(stale_before):
            if self.ledger.reclaim_notice(notice):
                self._send(event, notice.id, notice.target, report)
        after = self.ledger.notice_cursor()
        while True:
            events, last = self.ledger.notice_events(after, self.batch)
            for event in events:
                self._one(event, report)
                self.ledger.move_notice_cursor(event.event_id)
            if last > after:  # an idle pass writes nothing: no write lock taken from the agents every second
                self.ledger.move_notice_cursor(last)
            if len(events) < self.batch:
                return report
            after = last

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Deliver every `interval` seconds until `stop` is set (a daemon thread of `guard serve`)."""
        while not stop.is_set():
            try:
                self.deliver()
            except Exception as exc:  # noqa: BLE001 (a hiccup must not end the loop: the next pass catches up)
                self.log.warning("notifier pass failed; retrying next pass", error=f"{type(exc).__name__}: {exc}")
            stop.wait(interval)

    # -- one event ----------------------------------------------------------------------------------------

    def _one(self, event: NoticeEvent, report: NotifyReport) -> None:
        notify = self._notify_of(event.team)
        if notify is None or event.kind not in notify.events:
            return
        approval = self.ledger.approval_for_call(event.call_id) if event.call_id else None
        run = self.ledger.get_run(event.run_id) if event.run_id else None
        url, key = notify.url(), notify.secret()
        target = target_of(url) if url else f"${notify.webhook_env}"
        approval_id = approval.approval_id if approval is not None else None
        stale = _stale(event, approval, run)
        if stale is not None or url is None or key is None:
            unset = notify.webhook_env if url is None else notify.secret_env
            state, why = (
                ("skipped", stale)
                if stale is not None
                else ("failed", f"${unset} is not set: nothing was sent (Guard never sends unsigned)")
            )
            if self.ledger.claim_notice(event, target=target, approval_id=approval_id, state=state, error=why):
                report.skipped += state == "skipped"
                report.failed += state == "failed"
            return
        notice_id = self.ledger.claim_notice(event, target=target, approval_id=approval_id)
        if notice_id is None:
            return  # another notifier holds this event
        self._send(event, notice_id, target, report, read=(approval, run))

    def _send(
        self,
        event: NoticeEvent,
        notice_id: int,
        target: str,
        report: NotifyReport,
        read: tuple[ApprovalRecord | None, RunRecord | None] | None = None,
    ) -> None:
        """Post the event's message and record the outcome on its claimed row (a dead notifier's too).

        `read`: the approval and run as the caller just read them; a row taken over from a dead notifier reads
        them afresh (its call may have been decided since)."""
        notify = self._notify_of(event.team)
        url, key = (notify.url(), notify.secret()) if notify is not None else (None, None)
        if url is None or key is None:
            self.ledger.settle_notice(
                notice_id, state="failed", attempts=0, error="the team's webhook or signing key is no longer configured"
            )
            report.failed += 1
            return
        if read is None:
            read = (
                self.ledger.approval_for_call(event.call_id) if event.call_id else None,
                self.ledger.get_run(event.run_id) if event.run_id else None,
            )
        approval, run = read
        if (stale := _stale(event, approval, run)) is not None:  # a stuck row whose call was decided since
            self.ledger.settle_notice(notice_id, state="skipped", attempts=0, error=stale)
            report.skipped += 1
            return
        delivery = post(
            url,
            self.message(event, approval, run),
            key,
            attempts=self.attempts,
            timeout=self.timeout,
            backoff=self.backoff,
        )
        self.ledger.settle_notice(
            notice_id, state="sent" if delivery.ok else "failed", attempts=delivery.attempts, error=delivery.error
        )
        if delivery.ok:
            report.sent += 1
        else:
            report.failed += 1
            report.errors.append(f"{event.team} event {event.event_id}: {delivery.error}")
            self.log.warning(
                "webhook delivery failed",
                team=event.team,
                kind=event.kind,
                run_id=event.run_id,
                target=target,
                attempts=delivery.attempts,
                error=delivery.error,
            )

    def _notify_of(self, team: str) -> Notify | None:
        policy = self.policies.policies.get(team)
        return policy.notify if policy is not None else None

    def _brake_message(self, event: NoticeEvent) -> tuple[str, dict[str, Any]]:
        """A pause set or lifted, or a stop rule that tripped: what, who and why, naming the pause point's owners."""
        d = event.detail
        policy = self.policies.policies.get(event.team)
        if event.kind == "stop_tripped":
            call = self.ledger.get_call(event.call_id) if event.call_id else None
            tool = call.tool if call is not None else None
            owners = [{"owner": o.owner, "backup": o.backup} for o in (policy.owners_of(tool) if policy else ())]
            text = (
                f"Stop rule tripped in team *{event.team}*: `{tool}` in run `{event.run_id}` was denied: "
                f"{d.get('reason')}. Owners: {_owners_text(owners)}. Pause it if it is a runaway "
                f"(`guard pause --tool {tool} --in-team {event.team}`)."
            )
            return text, {"tool": tool, "reason": d.get("reason"), "owners": owners}
        scope, target, reason = d.get("scope"), d.get("target"), d.get("reason")
        tool = target if scope == "tool" else None
        owners = [{"owner": o.owner, "backup": o.backup} for o in (policy.owners_of(tool) if policy else ())]
        if event.to_state == "lifted":
            text = (
                f"Pause lifted in team *{event.team}*: {scope} `{target}` runs again ({event.actor}: {reason}). "
                f"Owners: {_owners_text(owners)}."
            )
        else:
            text = (
                f"Paused in team *{event.team}*: {scope} `{target}` by {event.actor}: {reason}. New calls"
                f"{' and runs' if scope == 'team' else ''} are refused until it is lifted. Owners: "
                f"{_owners_text(owners)}."
            )
        return text, {
            "state": event.to_state,
            "scope": scope,
            "target": target,
            "reason": reason,
            "by": event.actor,
            "owners": owners,
        }

    def _restart_message(self, event: NoticeEvent) -> tuple[str, dict[str, Any]]:
        """A step of a staged restart: a stage opened, passed (the pause holds until confirmed), failed (the pause
        holds everything again), or the last stage done (the pause lifted); naming the pause point's owners."""
        d = event.detail
        scope, target, stages = d.get("scope"), d.get("target"), list(d.get("stages") or [])
        stage = int(d.get("stage") or 1)
        size = stages[stage - 1] if 0 < stage <= len(stages) else None
        policy = self.policies.policies.get(event.team)
        tool = target if scope == "tool" else None
        owners = [{"owner": o.owner, "backup": o.backup} for o in (policy.owners_of(tool) if policy else ())]
        plan = ",".join(map(str, stages))
        head = f"Staged restart {d.get('restart')} of {scope} `{_md(target)}` in team *{_md(event.team)}*"
        step = {
            "passing": f"stage {stage} of {plan} opened: it lets {size} call(s) through ({_md(event.actor)}: "
            f"{_md(d.get('reason'))})",
            "holding": f"stage {stage} of {plan} passed ({d.get('passed')} call(s)): the pause holds until an owner "
            f"confirms (`guard unpause --{scope} {_md(target)} --confirm-stage`)",
            "failed": f"stage {stage} of {plan} failed: {_md(d.get('reason'))}. Re-paused: the pause holds "
            "everything again",
            "done": f"every stage of {plan} passed: the pause is lifted ({_md(event.actor)}: {_md(d.get('reason'))})",
        }.get(event.to_state, f"{event.to_state}: {_md(d.get('reason'))}")
        text = f"{head}: {step}. Owners: {_owners_text(owners)}."
        return text, {
            "restart": d.get("restart"),
            "step": {"passing": "opened", "holding": "passed"}.get(event.to_state, event.to_state),
            "state": event.to_state,
            "scope": scope,
            "target": target,
            "stages": stages,
            "stage": stage,
            "passed": d.get("passed"),
            "reason": d.get("reason"),
            "by": event.actor,
            "owners": owners,
        }

    def message(self, event: NoticeEvent, approval: ApprovalRecord | None, run: RunRecord | None) -> dict[str, Any]:
        """The Slack-compatible message: `text` (mrkdwn, with a link to the page) plus the facts as `guard`; a waiting
        call also gets Block Kit `blocks` (rule, redacted arguments, their hash, a link; Approve and Reject buttons
        when the team decides from Slack, policy `slack:`)."""
        base = self.page_url.rstrip("/")
        facts: dict[str, Any] = {
            "event": event.kind,
            "event_id": event.event_id,
            "team": event.team,
            "run_id": event.run_id,
            "call_id": event.call_id,
        }
        if event.kind in ("paused", "stop_tripped", "restart"):
            text, more = self._restart_message(event) if event.kind == "restart" else self._brake_message(event)
            return {"text": f"{text} <{base}/|Open the reviewer page>", "guard": facts | more | {"url": f"{base}/"}}
        if event.kind == "approval_waiting" and approval is not None:
            link = f"{base}/approvals/{approval.approval_id}"
            roles = ", ".join(approval.role_list)
            expires = datetime.fromtimestamp(approval.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            edited = f" edited by {_md(event.actor)}:" if event.to_state == "edited" else ""
            again = " again" if edited else ""
            text = (
                f"Approval needed{again} in team *{_md(event.team)}*:{edited} `{_md(approval.tool)}` waits for "
                f"{approval.quorum} reviewer(s) with role *{_md(roles)}* (asked by {_md(approval.requested_by)}, "
                f"expires {expires}). <{link}|Review it>"
            )
            facts |= {
                "approval_id": approval.approval_id,
                "tool": approval.tool,
                "roles": approval.role_list,
                "quorum": approval.quorum,
                "expires_at": approval.expires_at,
                "url": link,
                "args_hash": approval.approved_args_hash or approval.args_hash,
            }
            if edited:
                facts |= {"edited_by": event.actor, "rule": event.detail.get("rule")}
            policy = self.policies.policies.get(event.team)
            blocks = approval_blocks(approval, link, buttons=policy is not None and policy.slack is not None)
            return {"text": text, "blocks": blocks, "guard": facts}
        else:
            policy = self.policies.policies.get(event.team)
            roles = sorted({r for held in policy.reviewers.values() for r in held}) if policy else []
            label = (run.status_label if run else None) or event.to_state
            summary = (run.error_summary if run else None) or ""
            step = (run.next_safe_action if run else None) or f"guard runs show {event.run_id}"
            text = (
                f"Run `{_md(event.run_id)}` of team *{_md(event.team)}* is {event.to_state.replace('_', ' ')}: "
                f"*{_md(label)}*{': ' + _md(summary) if summary else ''}. "
                f"Owners: role *{_md(', '.join(roles) or 'none')}*. Next: {_md(step)}. "
                f"<{base}/|Open the reviewer page>"
            )
            facts |= {"state": event.to_state, "label": label, "roles": roles, "url": f"{base}/"}
        return {"text": text, "guard": facts}


def _owners_text(owners: list[dict[str, str]]) -> str:
    return "; ".join(f"*{o['owner']}* (backup *{o['backup']}*)" for o in owners) or "none named (policy `owners:`)"


def _stale(event: NoticeEvent, approval: ApprovalRecord | None, run: RunRecord | None) -> str | None:
    """Why the event no longer needs telling (decided or resolved before the pass), or None."""
    if event.kind in ("paused", "stop_tripped", "restart"):
        return None  # a pause, a trip or a restart's step is news even when lifted since: the owners hear of each
    if event.kind == "approval_waiting":
        if approval is None:
            return "no approval recorded for this call"
        return None if approval.state == "pending" else f"approval already {approval.state}"
    if run is None or run.state != event.to_state:
        return f"run is {run.state if run else 'gone'} now"
    return None


def _md(value: object) -> str:
    """A value from the ledger inside Slack mrkdwn: control characters escaped (`guard.printable`) and `&`, `<`,
    `>` entity-encoded as Slack asks, so a tool name can neither add a line nor a link of its own."""
    return printable(str(value)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
