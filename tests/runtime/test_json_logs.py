"""JSON logs: one object per line with the console line's context, chosen by Guard(log_format=...) or
GUARD_LOG_FORMAT, secrets redacted as on the console."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from guard import Guard, GuardUsageError
from guard.logs import make_logger


def find_contact(contact_id: str) -> dict[str, str]:
    return {"contact_id": contact_id}


def _lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_a_guarded_call_logs_one_json_object_per_line_with_its_run_and_call(
    make_guard: Callable[..., Guard], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every line a guarded call logs parses as JSON and carries the run id, team, call id, tool and level."""
    guard = make_guard(log_format="json", log_level="info")
    tool = guard.tool(find_contact, name="crm.find_contact")
    capsys.readouterr()
    with guard.run("onboarding") as run:
        tool(contact_id="c-1")
    records = _lines(capsys.readouterr().err)
    done = [r for r in records if r["event"] == "call completed"]
    assert len(done) == 1
    assert done[0]["run_id"] == run.run_id and done[0]["team"] == "onboarding"
    assert done[0]["tool"] == "crm.find_contact" and done[0]["call_id"].startswith("call_")
    assert done[0]["level"] == "info" and "T" in done[0]["timestamp"]


def test_guard_log_format_in_the_environment_chooses_json(
    make_guard: Callable[..., Guard], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GUARD_LOG_FORMAT=json turns a Guard made without log_format to JSON lines."""
    monkeypatch.setenv("GUARD_LOG_FORMAT", "json")
    guard = make_guard(log_level="info")
    tool = guard.tool(find_contact, name="crm.find_contact")
    with guard.run("onboarding"):
        tool(contact_id="c-1")
    assert any(r["event"] == "call completed" for r in _lines(capsys.readouterr().err))


def test_an_unknown_log_format_is_refused_by_name(
    make_guard: Callable[..., Guard], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt GUARD_LOG_FORMAT stops the Guard with an error naming the variable, never a silent fallback."""
    monkeypatch.setenv("GUARD_LOG_FORMAT", "jsno")
    with pytest.raises(GuardUsageError, match="GUARD_LOG_FORMAT='jsno'"):
        make_guard()


def test_json_and_console_lines_hold_the_same_keys_with_secrets_redacted() -> None:
    """The same event logged both ways names the same keys; a secret field is `[REDACTED]` in both."""
    as_json, as_text = io.StringIO(), io.StringIO()
    for stream, json_ in ((as_json, True), (as_text, False)):
        make_logger("info", stream=stream, json=json_, secret_fields=["ssn"]).info(
            "call failed", tool="lab.wire", api_key="sk-live-123", ssn="123-45-6789", attempt=2
        )
    record = json.loads(as_json.getvalue())
    assert record["api_key"] == "[REDACTED]" and record["ssn"] == "[REDACTED]"
    assert "sk-live-123" not in as_json.getvalue() and "sk-live-123" not in as_text.getvalue()
    assert "123-45-6789" not in as_text.getvalue()
    for key in set(record) - {"event", "level", "timestamp"}:
        assert f"{key}=" in as_text.getvalue()
