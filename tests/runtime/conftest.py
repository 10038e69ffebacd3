"""Runtime fixtures: each scenario runs twice, once with sync tools in `with guard.run` and once with async
tools in `async with guard.run` awaited on an event loop, against a real ledger on each backend (a SQLite file
and PostgreSQL)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import REPO, Driver

from guard import Guard

LAB_POLICY = """\
team: lab
description: Tools that misbehave on purpose, one rule each
secrets: [api_key, ssn]
reviewers:
  alice: [finance]
  bob: [finance]
  sam: [support]
rules:
  - name: flaky-read
    tools: [lab.flaky_read]
    class: read
    retry: {attempts: 3, backoff: {initial: 1ms, max: 1ms, multiplier: 1}}
  - name: halting-write
    tools: [lab.halting_write]
    class: compensable
    on_failure: halt
  - name: continuing-write
    tools: [lab.continuing_write]
    class: compensable
    on_failure: continue
  - name: slow-write
    tools: [lab.slow_write]
    class: compensable
    retry: {timeout: 50ms}
  - name: wire
    tools: [lab.wire_money]
    class: irreversible
    approval: {roles: [finance], quorum: 2}
  - name: flash-sale
    tools: [lab.flash_sale]
    class: compensable
    approval: {roles: [finance], expires_after: 50ms}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """The repository's onboarding policy and the lab policy above, in a directory of their own."""
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copyfile(REPO / "policies" / "onboarding.yaml", folder / "onboarding.yaml")
    (folder / "lab.yaml").write_text(LAB_POLICY)
    return folder


@pytest.fixture
def make_guard(policy_dir: Path, ledger_url: str) -> Iterator[Callable[..., Guard]]:
    """Guard(...) on this test's ledger (on each backend) and policy directory; closed at teardown."""
    made: list[Guard] = []

    def make(**kwargs: Any) -> Guard:
        kwargs.setdefault("policies", policy_dir)
        if not ledger_url.startswith("sqlite"):
            # A shared ledger's workers are given one hashing key, as in a deployment (GUARD_SECRET_KEY); a SQLite
            # file gets a key file beside it by itself.
            kwargs.setdefault("secret_key", "test-deployment-key-0123456789")
        guard = Guard(db=ledger_url, **kwargs)
        made.append(guard)
        return guard

    yield make
    for guard in made:
        guard.close()


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)
