"""A guided run of the onboarding example: `make demo`, or from the repo root
`.venv/bin/python examples/onboarding/demo.py` (the module form `python -m examples.onboarding.demo` works too).

The story: a new customer signs up; an agent creates the CRM contact, a draft invoice and a workspace, then
wants to send the welcome email. The email cannot be unsent, so the team's policy holds it for a reviewer
with the `support` role. A reviewer approves it from the terminal (`guard approvals ...`) or, with
GUARD_DEMO_REVIEW=page, on the reviewer page the demo serves (it prints the URL and a token); the agent
finishes, and the same sign-up event delivered again changes nothing anywhere.

Then two more customers: one whose workspace cannot be created (the invoice already opened for them is
voided by its compensation, no welcome email goes out, and the run halts for operations in a named state),
and one whose welcome email fails once before anything was sent (only the email is sent again).

Everything lives in examples/onboarding/state/ (the four systems' SQLite files and Guard's ledger,
guard.db); the demo wipes it at the start. Set GUARD_DEMO_LOG=warning for fewer Guard log lines on stderr.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `examples.onboarding` importable
    sys.path.insert(0, str(REPO))

from examples.onboarding import systems  # noqa: E402
from examples.onboarding.agent import make_tools, onboard  # noqa: E402
from guard import ApprovalPending, CallFailed, Guard, RunNotRunning  # noqa: E402

STATE = Path("examples/onboarding/state")  # relative to the repo root (the demo runs there)
DB = str(STATE / "guard.db")
POLICIES = "policies"
EVENT_ID = "evt_signup_1001"
RUN_ID = f"onboarding:{EVENT_ID}"
CUSTOMER = {
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "company": "Analytical Engines Ltd",
    "plan": "team",
    "first_invoice_cents": 4900,
    "currency": "EUR",
}
# The second story: a customer whose workspace cannot be created.
FAIL_EVENT_ID = "evt_signup_1002"
FAIL_RUN_ID = f"onboarding:{FAIL_EVENT_ID}"
FAIL_CUSTOMER = {
    "email": "grace@example.com",
    "name": "Grace Hopper",
    "company": "Compiler Works",
    "plan": "team",
    "first_invoice_cents": 4900,
    "currency": "EUR",
}
FAIL_LABEL = "invoice_created_provisioning_failed"
# The third story: a customer whose welcome email fails once, cleanly.
RETRY_EVENT_ID = "evt_signup_1003"
RETRY_RUN_ID = f"onboarding:{RETRY_EVENT_ID}"
RETRY_CUSTOMER = {
    "email": "katherine@example.com",
    "name": "Katherine Johnson",
    "company": "Langley Research",
    "plan": "starter",
    "first_invoice_cents": 1900,
    "currency": "EUR",
}
DEADLINE_S = 30.0  # upper bound for every wait below; none of them is a fixed sleep
# Who approves the welcome email: `cli` (the default: sam, scripted, from the terminal) or `page` (you, on the
# reviewer page the demo serves: `GUARD_DEMO_REVIEW=page make demo`, then open the URL it prints).
REVIEW = os.environ.get("GUARD_DEMO_REVIEW", "cli")
PAGE_PORT = int(os.environ.get("GUARD_DEMO_PORT", "8765"))
PAGE_WAIT_S = 900.0  # how long the demo waits for a person on the page


class DemoFailed(Exception):
    """Something the story promises did not happen."""


# -- printing -----------------------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def section(number: int, title: str, why: str) -> None:
    say()
    say(f"=== {number}. {title} " + "=" * max(3, 72 - len(title)))
    say(textwrap.fill(why, 100))
    say()


def indented(text: str) -> None:
    say(textwrap.indent(text.rstrip("\n"), "    "))


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise DemoFailed(what)
    say(f"  ok: {what}")


# -- the real CLI, as a subprocess ---------------------------------------------------------------------------


def _guard_command() -> list[str]:
    script = Path(sys.executable).parent / "guard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "guard"]


def guard_cli(*args: str, show: bool = True, env: dict[str, str] | None = None) -> str:
    """Run `guard ARGS...` from the repo root, with `env` added to the environment; print the command (and its
    output when `show`)."""
    if show:
        say("$ " + "".join(f"{k}=... " for k in env or {}) + "guard " + shlex.join(args))
    proc = subprocess.run(
        [*_guard_command(), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=DEADLINE_S,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise DemoFailed(f"`guard {shlex.join(args)}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    if show:
        indented(proc.stdout)
    return proc.stdout


# -- the story -----------------------------------------------------------------------------------------------


def fresh_start() -> None:
    section(
        1,
        "A fresh start",
        "Four stand-in systems (CRM, billing, provisioning, email), each with its own SQLite file, and an "
        "empty Guard ledger. Nothing is shared between them but the ids the agent passes along.",
    )
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    for cls in systems.SYSTEMS:
        cls(STATE)
    say(f"  state directory: {STATE}/   ledger: {DB}")
    say(f"  systems: {', '.join(f'{c.name}.db' for c in systems.SYSTEMS)} (all empty)")


def policy_explain() -> None:
    section(
        2,
        "What the policy says",
        "policies/onboarding.yaml decides, per call, its side-effect class and whether a human must "
        "approve it. `guard policy explain` shows the decision before anything runs.",
    )
    invoice = {"contact_id": "ct_example", "amount_cents": CUSTOMER["first_invoice_cents"], "currency": "EUR"}
    guard_cli(
        "policy",
        "explain",
        "billing.create_invoice",
        "--team",
        "onboarding",
        "--args",
        json.dumps(invoice),
        "--policies",
        POLICIES,
    )
    say("  -> a small draft invoice is compensable (it can be voided) and runs without waiting.")
    say()
    email = {"to": CUSTOMER["email"], "workspace_id": "ws_example"}
    guard_cli(
        "policy",
        "explain",
        "email.send_welcome",
        "--team",
        "onboarding",
        "--args",
        json.dumps(email),
        "--policies",
        POLICIES,
    )
    say("  -> an email cannot be unsent: it waits for a reviewer with the `support` role.")


def start_agent(guard: Guard) -> tuple[threading.Thread, dict[str, Any]]:
    section(
        3,
        "The agent handles the sign-up event",
        f"Event {EVENT_ID} (customer.signed_up, {CUSTOMER['email']}) starts run {RUN_ID}. The agent runs "
        "in a background thread; Guard logs each call to stderr. It will stop at the welcome email and "
        "wait (approval='block').",
    )
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = onboard(guard, CUSTOMER, EVENT_ID, tools=make_tools(guard, STATE))
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    agent = threading.Thread(target=work, name="onboarding-agent", daemon=True)
    agent.start()
    say(
        "  agent started: crm.upsert_contact -> billing.create_invoice -> provisioning.create_workspace "
        "-> email.send_welcome"
    )
    return agent, outcome


def wait_for_approval(agent: threading.Thread, outcome: dict[str, Any]) -> dict[str, Any]:
    section(
        4,
        "A reviewer finds the waiting approval",
        "The reviewer is another process: it only sees the ledger. It polls `guard approvals list` "
        "until the agent's request shows up, then reads it with `guard approvals show`.",
    )
    say("$ guard approvals list --team onboarding --json --db " + DB + "   (polled until the request appears)")
    deadline = time.monotonic() + DEADLINE_S
    delay = 0.05
    while True:
        listed = json.loads(guard_cli("approvals", "list", "--team", "onboarding", "--json", "--db", DB, show=False))
        mine = [a for a in listed if a["run_id"] == RUN_ID and a["tool"] == "email.send_welcome"]
        if mine:
            break
        if not agent.is_alive():
            raise DemoFailed(f"the agent stopped before asking for approval: {outcome.get('error')!r}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"no approval request within {DEADLINE_S:g}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    approval = mine[0]
    indented(
        json.dumps(
            {
                k: approval.get(k)
                for k in ("approval_id", "run_id", "tool", "state", "args", "args_hash", "roles", "expires_at")
            },
            indent=2,
            default=str,
        )
    )
    say()
    guard_cli("approvals", "show", approval["approval_id"], "--db", DB)
    say("  The contact, the invoice and the workspace already exist; only the email waits:")
    indented(systems.format_snapshot(systems.snapshot(STATE)))
    return approval


def duplicate_while_waiting() -> None:
    section(
        5,
        "The same event arrives again while the email waits",
        "Webhook senders retry when a handler is slow. A second worker picks up the same event "
        f"({EVENT_ID}), so it lands in the same run. This worker defers instead of blocking "
        "(approval='defer'): it hands the event back as soon as a call waits for a human.",
    )
    before = systems.counts(STATE)
    with Guard(policies=POLICIES, db=DB, actor="agent", approval="defer", log_level=LOG_LEVEL) as worker:
        try:
            onboard(worker, CUSTOMER, EVENT_ID, tools=make_tools(worker, STATE))
        except ApprovalPending as pending:
            say(f"  second worker: {pending}")
        else:
            raise DemoFailed("the duplicate delivery finished without waiting for the approval")
    after = systems.counts(STATE)
    say(f"  rows in the systems before: {before}")
    say(f"  rows in the systems after:  {after}")
    expect(
        before == after,
        "the contact, invoice and workspace calls returned their recorded results; no system was called again",
    )
    pending = json.loads(guard_cli("approvals", "list", "--team", "onboarding", "--json", "--db", DB, show=False))
    expect(
        len([a for a in pending if a["run_id"] == RUN_ID]) == 1,
        "the welcome email still has exactly one approval request",
    )


class ReviewerPage:
    """The approval service (`guard serve`'s app) on loopback, in a thread of the demo."""

    def __init__(self) -> None:
        import uvicorn

        from guard.server import create_app

        self.port = _free_port(PAGE_PORT)
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(DB, POLICIES, public_url=self.url)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="reviewer-page", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + DEADLINE_S
        while not self._healthy():
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DemoFailed(f"the reviewer page did not start on {self.url}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=DEADLINE_S)


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def approve(approval: dict[str, Any], page: ReviewerPage) -> dict[str, str]:
    """Sam's decision; returns what the terminal needs to decide as sam again: GUARD_SERVER_URL and GUARD_TOKEN."""
    section(
        6,
        "Sam (support) approves: on the reviewer page, or from the terminal",
        "The approval service is running beside the agent (the same app as `guard serve`). A token names a "
        "reviewer; the policy says which roles they hold (sam: support). On the page, sam sees the call "
        "waiting with its exact arguments and hash, the rule and the run so far; he may approve, reject "
        "with a reason, or edit the arguments and approve those. From the terminal he decides through the "
        "same service (--server, his token in $GUARD_TOKEN), and --args-hash makes the approval refuse if "
        "the arguments changed since he read them. Either way the decision goes into the ledger, where the "
        "waiting agent sees it. (`--as NAME` instead writes the ledger directly: that is operator power.)",
    )
    created = json.loads(
        guard_cli(
            "tokens",
            "create",
            "--reviewer",
            "sam",
            "--label",
            "demo",
            "--by",
            "demo",
            "--json",
            "--db",
            DB,
            "--policies",
            POLICIES,
            show=False,
        )
    )
    sam = {"GUARD_SERVER_URL": page.url, "GUARD_TOKEN": created["token"]}
    say("$ guard tokens create --reviewer sam --label demo --db " + DB)
    say(f"  reviewer page: {page.url}/approvals/{approval['approval_id']}")
    say(f"  sign in as sam with this token: {created['token']}")
    if REVIEW != "page":
        say("  (GUARD_DEMO_REVIEW=page make demo waits for you to decide there; this run approves from the terminal)")
        guard_cli(
            "approvals",
            "approve",
            approval["approval_id"],
            "--server",
            page.url,
            "--reason",
            "looks right",
            "--args-hash",
            approval["args_hash"],
            env={"GUARD_TOKEN": created["token"]},
        )
        return sam
    say(f"  waiting up to {PAGE_WAIT_S / 60:g} minutes for your decision on the page ...")
    deadline = time.monotonic() + PAGE_WAIT_S
    while True:
        shown = json.loads(guard_cli("approvals", "show", approval["approval_id"], "--json", "--db", DB, show=False))
        state = shown["state"]
        if state != "pending":
            break
        if time.monotonic() > deadline:
            raise DemoFailed("nobody decided on the page in time")
        time.sleep(0.5)
    guard_cli("approvals", "show", approval["approval_id"], "--db", DB)
    if state != "approved":
        raise DemoFailed(
            f"the welcome email was {state} on the page, so it was not sent (that is Guard working: "
            "rerun `make demo` to see the rest of the story)"
        )
    return sam


def agent_finishes(agent: threading.Thread, outcome: dict[str, Any]) -> dict[str, Any]:
    section(
        7,
        "The agent resumes and finishes",
        "The blocked call wakes up approved, sends the email once, and the run completes.",
    )
    agent.join(timeout=DEADLINE_S)
    if agent.is_alive():
        raise DemoFailed(f"the agent did not finish within {DEADLINE_S:g}s of the approval")
    if "error" in outcome:
        raise DemoFailed(f"the agent failed: {outcome['error']!r}")
    result: dict[str, Any] = outcome["result"]
    indented(json.dumps(result, indent=2))
    expect(systems.counts(STATE)["email"] == 1, "one welcome email in the outbox")
    return result


def replay_after_completion(guard: Guard, result: dict[str, Any]) -> None:
    section(
        8,
        "The event is delivered once more, after the run completed",
        "A replay of a finished event (a redelivery, or someone pressing 'run again') must not create a "
        "second invoice or send a second email.",
    )
    before = systems.counts(STATE)
    try:
        again = onboard(guard, CUSTOMER, EVENT_ID, tools=make_tools(guard, STATE))
    except RunNotRunning as refused:
        say(f"  Guard refuses to reopen the finished run: {refused}")
    else:
        same = {k: again.get(k) for k in result} == result
        expect(same, "every call returned its recorded result (same contact, invoice, workspace, message ids)")
    after = systems.counts(STATE)
    say(f"  rows in the systems before: {before}")
    say(f"  rows in the systems after:  {after}")
    expect(before == after, "nothing ran twice")


def the_record() -> None:
    section(
        9,
        "What happened, according to each side",
        "The ledger's story of the run (every call, its class, state and external ids), what each system "
        "really holds, and a check that the ledger's hash-chained history was not edited.",
    )
    guard_cli("runs", "show", RUN_ID, "--db", DB)
    say()
    say("What the systems hold (each row carries the key that created it):")
    indented(systems.format_snapshot(systems.snapshot(STATE)))
    say()
    guard_cli("ledger", "verify", "--db", DB)


def show_run_json(run_id: str) -> dict[str, Any]:
    """`guard runs show RUN --json`, parsed (not printed): what the checks below read."""
    shown: dict[str, Any] = json.loads(guard_cli("runs", "show", run_id, "--json", "--db", DB, show=False))
    return shown


def rows_for(customer: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each system's rows that belong to this customer (by contact id, or by address for the outbox)."""
    snap = systems.snapshot(STATE)
    contact_ids = {r["contact_id"] for r in snap["crm"] if r["email"] == customer["email"]}
    return {
        "crm": [r for r in snap["crm"] if r["email"] == customer["email"]],
        "billing": [r for r in snap["billing"] if r["contact_id"] in contact_ids],
        "provisioning": [r for r in snap["provisioning"] if r["contact_id"] in contact_ids],
        "email": [r for r in snap["email"] if r["to_addr"] == customer["email"]],
    }


def provisioning_fails(guard: Guard) -> None:
    section(
        10,
        "A second customer: provisioning fails after the invoice was opened",
        f"Event {FAIL_EVENT_ID} ({FAIL_CUSTOMER['email']}) starts run {FAIL_RUN_ID}, with the provisioning "
        "service scripted to fail (systems.Provisioning(fail=True)). The contact and the draft invoice "
        "already exist when the workspace call fails. Its reconcile check asks provisioning for the call's "
        "key and proves no workspace was made; its rule says on_failure: compensate, so Guard runs the "
        "saga: the invoice is voided by its compensation (billing.void_invoice, itself a guarded call). "
        "The contact has no compensation: it remains, and the run halts for operations.",
    )
    tools = make_tools(guard, STATE, provisioning_fail=True)
    try:
        onboard(guard, FAIL_CUSTOMER, FAIL_EVENT_ID, tools=tools)
    except CallFailed as failed:
        say(f"  the agent gets CallFailed: {failed}")
        expect(failed.tool == "provisioning.create_workspace", "the failure names the provisioning call")
    else:
        raise DemoFailed("the onboarding of the second customer finished although provisioning was down")


def failure_record() -> None:
    section(
        11,
        "The ledger's story of the failed run",
        "The invoice call is rolled back, the void call is linked to it as its compensation, and the run "
        "waits in pending_review under a name an operator can read at a glance. Guard derives it from "
        "the ledger: the last effect that still stood when provisioning failed, then the failed system. "
        "The summary lists what was undone and what remains; the next safe action says what to do.",
    )
    guard_cli("runs", "show", FAIL_RUN_ID, "--db", DB)
    shown = show_run_json(FAIL_RUN_ID)
    run, calls = shown["run"], shown["calls"]
    by_tool = {c["tool"]: c for c in calls}
    invoice, void = by_tool.get("billing.create_invoice"), by_tool.get("billing.void_invoice")
    expect(run["state"] == "pending_review", "the run waits for operations in pending_review")
    expect(run["status_label"] == FAIL_LABEL, f"its operator-facing state is {FAIL_LABEL}")
    expect(invoice is not None and invoice["state"] == "rolled_back", "the invoice call is rolled_back")
    expect(
        void is not None
        and invoice is not None
        and void["state"] == "completed"
        and void["compensates_call_id"] == invoice["call_id"],
        "billing.void_invoice completed as the invoice call's compensation",
    )
    expect("email.send_welcome" not in by_tool, "the agent never got to the welcome email")


def failure_systems() -> None:
    section(
        12,
        "What the systems hold for the second customer",
        "The invoice is still there, voided (an invoice is voided, not deleted); there is no workspace "
        "and no welcome email; the contact remains for operations to decide on. The ledger's hash chain "
        "covers the failure and the saga too.",
    )
    mine = rows_for(FAIL_CUSTOMER)
    indented(systems.format_snapshot(mine))
    say()
    expect(len(mine["billing"]) == 1 and mine["billing"][0]["status"] == "voided", "the invoice is voided")
    expect(len(mine["email"]) == 0, f"no welcome email was sent to {FAIL_CUSTOMER['email']}")
    expect(len(mine["provisioning"]) == 0, "no workspace exists for the customer")
    expect(len(mine["crm"]) == 1, "the contact remains (it has no compensation), named in the run's summary")
    say()
    guard_cli("ledger", "verify", "--db", DB)


def email_fails_once(sam: dict[str, str]) -> None:
    section(
        13,
        "A third customer: the welcome email fails once, cleanly",
        f"Event {RETRY_EVENT_ID} ({RETRY_CUSTOMER['email']}), with the mail provider scripted to refuse the "
        "first send before sending anything (systems.Email(fail_once=True)). This worker defers the "
        "approval; sam approves from the terminal, and the event is handled again. The email's reconcile "
        "check asks the outbox for the call's key, finds nothing, and the rule's on_failure: retry sends "
        "it once more. Nothing else runs again, nothing is rolled back.",
    )
    with Guard(policies=POLICIES, db=DB, actor="agent", approval="defer", log_level=LOG_LEVEL) as worker:
        tools = make_tools(worker, STATE, email_fail_once=True)
        try:
            onboard(worker, RETRY_CUSTOMER, RETRY_EVENT_ID, tools=tools)
        except ApprovalPending as pending:
            say(f"  the worker defers: {pending}")
        else:
            raise DemoFailed("the third customer's email went out without an approval")
        listed = json.loads(guard_cli("approvals", "list", "--team", "onboarding", "--json", "--db", DB, show=False))
        [approval] = [a for a in listed if a["run_id"] == RETRY_RUN_ID]
        guard_cli(
            "approvals",
            "approve",
            approval["approval_id"],
            "--reason",
            "welcome aboard",
            "--args-hash",
            approval["args_hash"],
            env=sam,
        )
        result = onboard(worker, RETRY_CUSTOMER, RETRY_EVENT_ID, tools=tools)
        say(f"  the event handled again, after the approval: message {result['message_id']}")
    guard_cli("runs", "show", RETRY_RUN_ID, "--no-events", "--db", DB)
    shown = show_run_json(RETRY_RUN_ID)
    by_tool = {c["tool"]: c for c in shown["calls"]}
    mine = rows_for(RETRY_CUSTOMER)
    indented(systems.format_snapshot(mine))
    say()
    email_call = by_tool["email.send_welcome"]
    retried = [
        e["detail"]
        for e in shown["events"]
        if e["call_id"] == email_call["call_id"] and e["from_state"] == e["to_state"] == "started"
    ]
    say(f"  the ledger's record of the failed attempt: {retried}")
    expect(shown["run"]["state"] == "completed", "the run completed")
    expect(
        len(retried) == 1 and "EmailDown" in str(retried[0].get("error")),
        "the failed attempt is in the ledger's event trail",
    )
    expect(
        by_tool["email.send_welcome"]["attempts"] == 2,
        "the email call took two attempts (one failed, proven unsent, then sent)",
    )
    expect(len(mine["email"]) == 1, f"exactly one welcome email to {RETRY_CUSTOMER['email']}")
    expect(
        all(c["attempts"] == 1 for t, c in by_tool.items() if t != "email.send_welcome")
        and len(mine["billing"]) == 1
        and mine["billing"][0]["status"] == "draft",
        "the other calls ran once; the invoice stands (nothing was rolled back)",
    )


LOG_LEVEL = os.environ.get("GUARD_DEMO_LOG", "info")


def main() -> int:
    os.chdir(REPO)
    say("Guard onboarding demo: CRM -> billing -> provisioning -> welcome email, with a human in the loop.")
    fresh_start()
    policy_explain()
    wait = PAGE_WAIT_S + DEADLINE_S if REVIEW == "page" else DEADLINE_S * 2
    guard = Guard(policies=POLICIES, db=DB, actor="agent", approval="block", approval_timeout=wait, log_level=LOG_LEVEL)
    page: ReviewerPage | None = None
    try:
        agent, outcome = start_agent(guard)
        approval = wait_for_approval(agent, outcome)
        duplicate_while_waiting()
        page = ReviewerPage()
        sam = approve(approval, page)
        result = agent_finishes(agent, outcome)
        replay_after_completion(guard, result)
        the_record()
        provisioning_fails(guard)
        failure_record()
        failure_systems()
        email_fails_once(sam)
    except DemoFailed as failed:
        say()
        say(f"demo failed: {failed}")
        return 1
    finally:
        if page is not None:
            page.close()
        guard.close()
    say()
    say(
        f"Done. Try `guard runs show {RUN_ID} --db {DB}` or `guard runs show {FAIL_RUN_ID} --db {DB}` "
        "yourself, or rerun `make demo` (it starts fresh)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
