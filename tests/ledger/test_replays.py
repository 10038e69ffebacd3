"""Signed requests already received (`Ledger.first_sighting`): the second sighting of a key is a replay, and a key
is forgotten once past its expiry."""

from __future__ import annotations

from guard.ledger import Ledger


def test_a_signature_recorded_once_is_a_replay_the_second_time_whichever_ledger_handle_sees_it(
    ledger: Ledger, ledger_url: str
) -> None:
    """Another process's handle on the same ledger (another replica) finds the signature already recorded."""
    other = Ledger(ledger_url)
    try:
        assert ledger.first_sighting("slack", "v0=abc", expires_at=1_000.0, now=100.0) is True
        assert other.first_sighting("slack", "v0=abc", expires_at=1_000.0, now=101.0) is False
        assert ledger.first_sighting("slack", "v0=abc", expires_at=1_000.0, now=102.0) is False
    finally:
        other.close()


def test_the_same_signature_from_another_source_is_not_a_replay(ledger: Ledger) -> None:
    """The key is the source and the signature together."""
    assert ledger.first_sighting("slack", "v0=abc", expires_at=1_000.0, now=100.0) is True
    assert ledger.first_sighting("other", "v0=abc", expires_at=1_000.0, now=100.0) is True


def test_a_signature_past_its_expiry_is_pruned_and_only_then_forgotten(ledger: Ledger) -> None:
    """Until `expires_at` the signature stays a replay; a sighting after it finds the row pruned."""
    assert ledger.first_sighting("slack", "v0=old", expires_at=500.0, now=100.0) is True
    assert ledger.first_sighting("slack", "v0=old", expires_at=500.0, now=500.0) is False
    assert ledger.first_sighting("slack", "v0=new", expires_at=2_000.0, now=501.0) is True
    assert ledger.first_sighting("slack", "v0=old", expires_at=1_100.0, now=600.0) is True
