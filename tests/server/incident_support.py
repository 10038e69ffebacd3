"""A bad contact sync in the service's ledger (examples/bad_run, 12 contacts, 9 written wrongly), and tokens for
the contacts team: olga (operator), rita (support: a reviewer), maria (another team only)."""

from __future__ import annotations

import sys
from pathlib import Path

from server_support import POLICIES, REPO, Service

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.bad_run.agent import make_tools, sync_contacts
from guard import Guard

__all__ = ["bad_sync"]


def bad_sync(service: Service, state: Path, contacts: int = 12) -> None:
    """Run the sync once into the service's ledger and give olga and rita tokens."""
    guard = Guard(policies=POLICIES, db=service.url, log_level="error")
    try:
        tools = make_tools(guard, state)
        plans = {f"ct_{i:03d}": ("cancelled" if i % 4 == 0 else "paid") for i in range(contacts)}
        tools.billing.seed(plans)
        tools.crm.seed(dict.fromkeys(plans, "customer"))
        sync_contacts(guard, tools, "sync-1")
    finally:
        guard.close()
    for name in ("olga", "rita"):
        service.tokens[name] = service.ledger.create_token(name, by="test")[1]
