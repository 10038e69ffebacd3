"""The bad run the incident tests open incidents on: the contact sync of `examples/bad_run` (shared by the fixtures
in conftest.py and the tests)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.bad_run.agent import SyncTools  # noqa: E402
from guard import Guard  # noqa: E402
from guard.incidents import IncidentBook  # noqa: E402

__all__ = ["CONTACTS", "REPO", "BadRun", "plans"]

CONTACTS = 12  # ct_000 .. ct_011; every fourth is cancelled (its `churned` is right), the rest paid (wrong)


@dataclass
class BadRun:
    guard: Guard
    tools: SyncTools
    book: IncidentBook
    state: Path
    policies: Path
    event: str = "sync-1"

    def wrong_contacts(self) -> set[str]:
        return {c for c, p in self.tools.billing.plans().items() if p == "paid"}


def plans(n: int = CONTACTS) -> dict[str, str]:
    return {f"ct_{i:03d}": ("cancelled" if i % 4 == 0 else "paid") for i in range(n)}
