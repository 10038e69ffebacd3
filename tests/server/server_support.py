"""Shared by the approval-service tests: the policies, the waiting call's arguments, the running service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from guard import ApprovalPending, Guard
from guard.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
WELCOME = {"to": "ada@example.com", "workspace_id": "ws_1"}


@dataclass
class Service:
    """The app, its ledger, a token per reviewer, and a way to make approvals wait."""

    app: FastAPI
    ledger: Ledger
    db_path: Path
    tokens: dict[str, str]
    sent: list[dict[str, Any]]

    def waiting(self, actor: str = "onboarding-agent", args: dict[str, Any] | None = None) -> str:
        """A run whose welcome email waits for support's approval, asked by `actor`; returns the approval id."""
        guard = Guard(policies=POLICIES, db=str(self.db_path), actor=actor, approval="defer", log_level="error")
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


def healthy(url: str) -> bool:
    """The service at `url` answers its health check."""
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
