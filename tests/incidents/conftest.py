"""Incident fixtures: the contact sync of `examples/bad_run` under a real Guard on each backend, run once so the
ledger holds a bad run to open incidents on."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.bad_run.agent import SyncTools, make_tools, sync_contacts  # noqa: E402
from guard import Guard  # noqa: E402
from guard.incidents import IncidentBook  # noqa: E402

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


@pytest.fixture
def contacts_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copyfile(REPO / "policies" / "contacts.yaml", folder / "contacts.yaml")
    return folder


@pytest.fixture
def bad_run(ledger_url: str, contacts_policies: Path, tmp_path: Path) -> Iterator[BadRun]:
    """A sync that wrote `churned` into 12 contacts (9 of them wrongly) and enrolled each in the win-back list."""
    state = tmp_path / "systems"
    guard = Guard(policies=contacts_policies, db=ledger_url, log_level="error")
    tools = make_tools(guard, state)
    tools.billing.seed(plans())
    tools.crm.seed({c: ("customer" if p == "paid" else "churned") for c, p in plans().items()})
    written, stopped = sync_contacts(guard, tools, "sync-1")
    assert (written, stopped) == (CONTACTS, None)
    try:
        yield BadRun(guard, tools, IncidentBook(guard.ledger), state, contacts_policies)
    finally:
        guard.close()
