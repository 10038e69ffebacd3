"""`guard tokens ...` and `guard serve` as a user runs them, on a real ledger (a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from server_support import POLICIES, healthy, ledger_contents
from typer.testing import CliRunner

from guard.cli import app
from guard.ledger import Ledger
from guard.ledger.tokens import hash_token
from guard.testing import poll


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GUARD_POLICY_DIR", str(POLICIES))
    return CliRunner()


def test_a_token_is_shown_once_and_stored_only_as_its_hash(runner: CliRunner, ledger_url: str) -> None:
    done = runner.invoke(app, ["tokens", "create", "--reviewer", "sam", "--db", ledger_url, "--json"])
    assert done.exit_code == 0, done.output
    created = json.loads(done.output)
    assert created["teams"] == ["onboarding"] and created["token"].startswith("gtk_")
    ledger = Ledger(ledger_url)
    try:
        with ledger.conns.read() as cur:
            [(stored,)] = cur.execute("SELECT token_hash FROM reviewer_tokens").fetchall()
        contents = ledger_contents(ledger)
    finally:
        ledger.close()
    assert stored == hash_token(created["token"]) and created["token"] not in contents
    listed = runner.invoke(app, ["tokens", "list", "--db", ledger_url, "--json"])
    assert [t["token_id"] for t in json.loads(listed.output)] == [created["token_id"]]
    assert "gtk_" not in listed.output


def test_a_token_for_someone_no_policy_names_is_refused(runner: CliRunner, ledger_url: str) -> None:
    done = runner.invoke(app, ["tokens", "create", "--reviewer", "mallory", "--db", ledger_url])
    assert done.exit_code == 2 and "reviewers:" in done.output


def test_a_revoked_token_no_longer_names_anyone(runner: CliRunner, ledger_url: str) -> None:
    created = json.loads(
        runner.invoke(app, ["tokens", "create", "--reviewer", "alice", "--db", ledger_url, "--json"]).output
    )
    done = runner.invoke(app, ["tokens", "revoke", created["token_id"], "--db", ledger_url])
    assert done.exit_code == 0 and "revoked" in done.output
    ledger = Ledger(ledger_url)
    try:
        assert ledger.token_for_secret(created["token"]) is None
        assert ledger.verify_chain().ok  # the token's events continue the audit chain
        with ledger.conns.read() as cur:
            trail = [
                tuple(r)
                for r in cur.execute("SELECT to_state FROM events WHERE entity = 'token' ORDER BY id").fetchall()
            ]
    finally:
        ledger.close()
    assert trail == [("active",), ("revoked",)]
    assert runner.invoke(app, ["tokens", "list", "--db", ledger_url, "--json"]).output.strip() == "[]"
    unknown = runner.invoke(app, ["tokens", "revoke", "tok_nope", "--db", ledger_url])
    assert unknown.exit_code == 2


def test_guard_serve_answers_health_and_the_api_on_loopback(ledger_url: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GUARD_POLICY_DIR": str(POLICIES)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard", "serve", "--port", str(port), "--db", ledger_url, "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        poll(
            lambda: proc.poll() is not None or healthy(f"http://127.0.0.1:{port}"),
            timeout=20,
            what="guard serve answering /health",
        )
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert httpx.get(f"http://127.0.0.1:{port}/api/approvals").status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # reaps the process and closes its pipes
