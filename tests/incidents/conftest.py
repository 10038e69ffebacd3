"""Incident fixtures: the contact sync of `examples/bad_run` under a real Guard on each backend, run once so the
ledger holds a bad run to open incidents on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from bad_run_support import CONTACTS, REPO, BadRun, plans

from examples.bad_run.agent import make_tools, sync_contacts
from guard import Guard
from guard.incidents import IncidentBook
from guard.ledger import Ledger


@pytest.fixture
def contacts_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copyfile(REPO / "policies" / "contacts.yaml", folder / "contacts.yaml")
    return folder


@pytest.fixture
def bad_run(ledger: Ledger, ledger_url: str, contacts_policies: Path, tmp_path: Path) -> Iterator[BadRun]:
    """A sync that wrote `churned` into 12 contacts (9 of them wrongly) and enrolled each in the win-back list."""
    state = tmp_path / "systems"
    guard = Guard(policies=contacts_policies, db=ledger_url, log_level="error")
    tools = make_tools(guard, state)
    tools.billing.seed(plans())
    tools.crm.seed({c: ("customer" if p == "paid" else "churned") for c, p in plans().items()})
    written, stopped = sync_contacts(guard, tools, "sync-1")
    assert (written, stopped) == (CONTACTS, None)
    try:
        yield BadRun(guard, tools, IncidentBook(ledger), state, contacts_policies)
    finally:
        guard.close()
