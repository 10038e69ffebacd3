"""Control characters an agent puts in a tool name, arguments or a reason never reach a person raw.

A newline in a tool name must not forge a log line or a CLI row, and an ESC sequence must not reach the
terminal. One real Guard call with such a tool name goes through the console log, every CLI text output
that shows it, the reviewer page and the webhook message; each shows the characters escaped.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from guard import ApprovalPending, CallDenied, Guard
from guard.cli import app
from guard.ledger import Ledger, NoticeEvent
from guard.notify import Notifier
from guard.printable import printable
from guard.server.desk import Desk, Reviewer
from guard.server.html import approval_page, queue_page

FORGED = "\n12:00:00 [info     ] forged line"
TOOL = f"pay.refund{FORGED}\x1b[31m\x1b]0;owned\x07\u202e"
DENIED_TOOL = f"nobody.knows{FORGED}\x1b[2J"
ARGS = {"note": f"line one{FORGED}\x1b[31m", "amount_cents": 100}
# anything but the newline that ends a line of output: C0/C1 controls, DEL, line separators, bidi controls
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

POLICY = """team: ctl
reviewers:
  fin: [finance]
rules:
  - name: refunds
    tools: ["pay.*"]
    class: irreversible
    approval: {roles: [finance]}
"""


def assert_clean(text: str) -> None:
    assert RAW.search(text) is None, repr(text)
    assert not any(line.lstrip().startswith("12:00:00 [info") for line in text.splitlines()), text


@pytest.fixture
def called(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Guard, str, str, str, str]]:
    """One held call and one denied call whose tool names carry a forged log line and terminal escapes;
    yields the Guard, the db path, the run id, the approval id and the console log it wrote."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ctl.yaml").write_text(POLICY)
    db = str(tmp_path / "guard.db")
    guard = Guard(policies=policies, db=db, approval="defer", log_level="debug")

    def tool(**_: Any) -> dict[str, str]:
        raise AssertionError("a held or denied call never runs")

    with guard.run("ctl") as run:
        with pytest.raises(ApprovalPending) as pending:
            guard.tool(tool, name=TOOL)(**ARGS)
        with pytest.raises(CallDenied):
            guard.tool(tool, name=DENIED_TOOL)(**ARGS)
    try:
        yield guard, db, run.run_id, pending.value.approval_id, capsys.readouterr().err
    finally:
        guard.close()


def test_the_console_log_escapes_the_tool_name_and_the_reason(called: tuple[Guard, str, str, str, str]) -> None:
    """Each log record stays one line: the forged line and the ESC sequences appear escaped, never raw."""
    *_, log = called
    assert printable(TOOL) in log and printable(DENIED_TOOL) in log
    assert_clean(log)


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "list"],
        ["runs", "show", "{run}"],
        ["approvals", "list"],
        ["approvals", "show", "{approval}"],
        ["approvals", "approve", "{approval}", "--as", "fin", "--policies", "{policies}"],
    ],
)
def test_cli_text_output_escapes_what_the_agent_sent(
    called: tuple[Guard, str, str, str, str], command: list[str], tmp_path: Path
) -> None:
    """`runs list/show` and `approvals list/show/approve` print the tool name escaped, on one line."""
    _, db, run_id, approval_id, _ = called
    args = [a.format(run=run_id, approval=approval_id, policies=tmp_path / "policies") for a in command]
    result = CliRunner().invoke(app, [*args, "--db", db])
    assert result.exit_code == 0, result.output
    assert_clean(result.output)
    if command[-1] != "list" or command[0] == "approvals":
        assert "pay.refund\\n12:00:00 [info     ] forged line\\x1b[31m" in result.output


def test_cli_errors_escape_what_they_quote(called: tuple[Guard, str, str, str, str]) -> None:
    """An error that quotes the user's input (an unknown run id with a newline and ESC) stays one clean line."""
    _, db, *_ = called
    result = CliRunner().invoke(app, ["runs", "show", f"run{FORGED}\x1b[31m", "--db", db])
    assert result.exit_code == 1
    assert_clean(result.output)
    assert "no run run\\n12:00:00" in result.output


def test_the_reviewer_page_shows_control_characters_escaped(called: tuple[Guard, str, str, str, str]) -> None:
    """The queue and the approval page, built by the service's own Desk from the ledger, show the tool name
    with its controls and bidi override escaped."""
    guard, db, _, approval_id, _ = called
    with closing(Ledger(f"sqlite:///{db}")) as ledger:  # the service's own, on the agent's file
        desk = Desk(ledger, guard.policies)
        fin = Reviewer("fin", "tok_1")
        queue = queue_page("fin", "csrf", desk.queue(fin))
        page = approval_page("fin", "csrf", desk.approval(fin, approval_id))
    for html in (queue, page):
        assert_clean(html)
        assert "pay.refund\\n12:00:00 [info     ] forged line\\x1b[31m\\x1b]0;owned\\x07\\u202e" in html


def test_the_webhook_message_cannot_gain_a_line_or_a_link(called: tuple[Guard, str, str, str, str]) -> None:
    """The Slack text escapes controls and encodes `<`, `>` and `&`, so a tool name adds no link of its own."""
    guard, db, run_id, approval_id, _ = called
    approval = guard.ledger.get_approval(approval_id)
    assert approval is not None
    approval = dataclasses.replace(approval, tool=f"{approval.tool}<https://evil.example|Approve here>")
    event = NoticeEvent(
        event_id=1,
        kind="approval_waiting",
        team="ctl",
        run_id=run_id,
        call_id=approval.call_id,
        to_state="awaiting_approval",
    )
    with closing(Ledger(f"sqlite:///{db}")) as ledger:  # the notifier's own, on the agent's file
        text = Notifier(ledger, guard.policies, "http://guard.local").message(event, approval, None)["text"]
    assert_clean(text)
    assert "&lt;https://evil.example|Approve here&gt;" in text
    assert text.count("<") == 1  # the one link Guard adds


def test_cli_commands_print_text_only_through_the_escaping_echo() -> None:
    """No command module calls typer.echo itself: text goes through `common.echo`, JSON through `common.emit`
    (`policy init` prints a YAML document to be saved as a file, which YAML quoting keeps safe)."""
    cli = Path(__file__).resolve().parents[2] / "guard" / "cli"
    direct = [
        f"{p.name}:{n}"
        for p in sorted(cli.glob("*.py"))
        if p.name not in ("common.py", "policy_init.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "typer.echo" in line or "print(" in line
    ]
    assert direct == []
