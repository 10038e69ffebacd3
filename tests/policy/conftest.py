"""Fixtures for the policy tests: a billing policy as a team would write it (data/billing.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.policy import Policy, policy_from_text

BILLING_FILE = Path(__file__).parent / "data" / "billing.yaml"


@pytest.fixture(scope="session")
def billing_text() -> str:
    return BILLING_FILE.read_text()


@pytest.fixture(scope="session")
def billing(billing_text: str) -> Policy:
    return policy_from_text(billing_text, source="policies/billing.yaml")
