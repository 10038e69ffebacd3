"""Shared by the approval-service tests: the policies, the waiting call's arguments, the running service."""

from __future__ import annotations

import socket
import threading
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from guard import ApprovalPending, Guard
from guard.ledger import Ledger, sqlite_path
from guard.runtime.keys import key_file_for
from guard.testing import poll

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
WELCOME = {"to": "ada@example.com", "workspace_id": "ws_1"}
# What every process of a shared (PostgreSQL) ledger is given as GUARD_SECRET_KEY, as in a deployment; a SQLite
# ledger file gets a key file beside it by itself.
SHARED_KEY = "test-deployment-key-0123456789"


@dataclass
class Service:
    """The app, its ledger (at `url`, on either backend), a token per reviewer, and a way to make approvals wait."""

    app: FastAPI
    ledger: Ledger
    url: str
    tokens: dict[str, str]
    sent: list[dict[str, Any]]

    @property
    def db_path(self) -> Path:
        """The SQLite ledger file (for the tests marked `sqlite_only` that read the file itself)."""
        path = sqlite_path(self.url)
        assert path is not None, f"{self.url} is not a SQLite file: mark the test sqlite_only"
        return path

    def waiting(self, actor: str = "onboarding-agent", args: dict[str, Any] | None = None) -> str:
        """A run whose welcome email waits for support's approval, asked by `actor`; returns the approval id."""
        guard = Guard(policies=POLICIES, db=self.url, actor=actor, approval="defer", log_level="error")
        try:
            tool = guard.tool(self._send, name="email.send_welcome")
            with pytest.raises(ApprovalPending) as pending, guard.run("onboarding"):
                tool(**(args or WELCOME))
            return pending.value.approval_id
        finally:
            guard.close()

    def _send(self, **kw: Any) -> dict[str, str]:
        self.sent.append(kw)
        return {"message_id": f"m-{len(self.sent)}"}

    def auth(self, reviewer: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[reviewer]}"}


def ledger_contents(ledger: Ledger) -> str:
    """Everything the ledger holds, as text: a SQLite file and its WAL byte for byte (freed pages included; never
    the hash key file beside them), or on PostgreSQL every value of every table, read back over SQL."""
    path = sqlite_path(ledger.url)
    if path is not None:
        files = sorted(path.parent.glob(path.name + "*"))
        assert key_file_for(path) not in files  # the hash key lives beside the ledger, not in it
        return b"".join(f.read_bytes() for f in files).decode("utf-8", "replace")
    with ledger.conns.read() as cur:
        tables = [
            str(t)
            for (t,) in cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
        ]
        return "\n".join(
            str(value)
            for table in tables
            for row in cur.execute(f'SELECT * FROM "{table}"').fetchall()
            for value in row
        )


def healthy(url: str) -> bool:
    """The service at `url` answers its health check."""
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Generator[str]:
    """`app` on a real uvicorn server on loopback in a thread; its base URL once /health answers (polled with a
    deadline). A second app on the same ledger is a second replica of the service."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: not thread.is_alive() or healthy(url), timeout=10, what="uvicorn answering /health")
        assert thread.is_alive(), "uvicorn stopped before it answered /health"
    except AssertionError:
        server.should_exit = True
        raise
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop"
