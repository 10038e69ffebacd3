"""`guard tokens ...` and `guard serve` as a user runs them, on a real ledger file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server_support import POLICIES, healthy
from typer.testing import CliRunner

from guard.cli import app
from guard.ledger import Ledger
from guard.ledger.tokens import hash_token
from guard.testing import poll


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GUARD_POLICY_DIR", str(POLICIES))
    return CliRunner()


def test_a_token_is_shown_once_and_stored_only_as_its_hash(runner: CliRunner, db_path: Path) -> None:
    done = runner.invoke(app, ["tokens", "create", "--reviewer", "sam", "--db", str(db_path), "--json"])
    assert done.exit_code == 0, done.output
    created = json.loads(done.output)
    assert created["teams"] == ["onboarding"] and created["token"].startswith("gtk_")
    with sqlite3.connect(db_path) as raw:
        [(stored,)] = raw.execute("SELECT token_hash FROM reviewer_tokens").fetchall()
        dump = "\n".join(raw.iterdump())
    assert stored == hash_token(created["token"]) and created["token"] not in dump
    listed = runner.invoke(app, ["tokens", "list", "--db", str(db_path), "--json"])
    assert [t["token_id"] for t in json.loads(listed.output)] == [created["token_id"]]
    assert "gtk_" not in listed.output


def test_a_token_for_someone_no_policy_names_is_refused(runner: CliRunner, db_path: Path) -> None:
    done = runner.invoke(app, ["tokens", "create", "--reviewer", "mallory", "--db", str(db_path)])
    assert done.exit_code == 2 and "reviewers:" in done.output


def test_a_revoked_token_no_longer_names_anyone(runner: CliRunner, db_path: Path) -> None:
    created = json.loads(runner.invoke(app, ["tokens", "create", "--reviewer", "alice", "--db", str(db_path),
                                             "--json"]).output)
    done = runner.invoke(app, ["tokens", "revoke", created["token_id"], "--db", str(db_path)])
    assert done.exit_code == 0 and "revoked" in done.output
    ledger = Ledger(f"sqlite:///{db_path}")
    try:
        assert ledger.token_for_secret(created["token"]) is None
        assert ledger.verify_chain().ok  # the token's events continue the audit chain
    finally:
        ledger.close()
    with sqlite3.connect(db_path) as raw:
        trail = raw.execute("SELECT to_state FROM events WHERE entity = 'token' ORDER BY id").fetchall()
    assert trail == [("active",), ("revoked",)]
    assert runner.invoke(app, ["tokens", "list", "--db", str(db_path), "--json"]).output.strip() == "[]"
    unknown = runner.invoke(app, ["tokens", "revoke", "tok_nope", "--db", str(db_path)])
    assert unknown.exit_code == 2


def test_guard_serve_answers_health_and_the_api_on_loopback(db_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GUARD_POLICY_DIR": str(POLICIES)}
    proc = subprocess.Popen([sys.executable, "-m", "guard", "serve", "--port", str(port), "--db", str(db_path),
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        poll(lambda: proc.poll() is not None or healthy(f"http://127.0.0.1:{port}"), timeout=20,
             what="guard serve answering /health")
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert httpx.get(f"http://127.0.0.1:{port}/api/approvals").status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # reaps the process and closes its pipes
