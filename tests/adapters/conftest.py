"""Adapter fixtures: the adapters on the import path, a lead-funnel policy, a Guard on a real ledger (a SQLite file and
a PostgreSQL database: a test that asks for `guard` or `deferring_guard` runs on both).

`adapters/` is a folder of import packages (`guard_langchain`, `guard_mcp`), not a package itself. The wheel
ships them at top level (`[tool.hatch.build.targets.wheel] packages`); an editable install made before that line
existed does not have them on the path, so the folder is put there here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
if str(ADAPTERS) not in sys.path:
    sys.path.insert(0, str(ADAPTERS))

from guard import Guard  # noqa: E402  # after the path line above, like the adapters' own imports

FUNNEL_POLICY = """\
team: funnel
description: Lead funnel under test (enrich, CRM, deal, sales notice, prospect email)
reviewers:
  maria: [marketing]
rules:
  - name: enrich
    tools: [enrichment.lookup]
    class: read
  - name: contact
    tools: [crm.upsert_contact]
    class: idempotent
  - name: deal
    tools: [crm.create_deal]
    class: compensable
    on_failure: compensate
  - name: close-deal
    tools: [crm.close_deal]
    class: idempotent
  - name: notify
    tools: [slack.notify_sales]
    class: compensable
    on_failure: compensate
  - name: prospect-email
    tools: [email.send_prospect]
    class: irreversible
    approval: {roles: [marketing], expires_after: 1h}
  - name: mcp-contact
    tools: [upsert_contact]
    class: idempotent
  - name: no-mass-delete
    tools: ["*.delete_all*"]
    deny: mass deletes are not allowed from the funnel agent
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "funnel.yaml").write_text(FUNNEL_POLICY)
    return folder


@pytest.fixture
def guard(policy_dir: Path, ledger_url: str) -> Iterator[Guard]:
    with Guard(policies=policy_dir, db=ledger_url, log_level="error", approval_timeout=20) as g:
        yield g


@pytest.fixture
def deferring_guard(policy_dir: Path, ledger_url: str) -> Iterator[Guard]:
    with Guard(policies=policy_dir, db=ledger_url, log_level="error", approval="defer") as g:
        yield g
