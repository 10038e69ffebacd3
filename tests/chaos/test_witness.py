"""The witness service on its own: idempotent by key, visibly not idempotent for `send`, scripted per call."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.chaos.harness import poll
from tests.chaos.witness import Witness, WitnessDown


def test_apply_with_a_key_seen_before_returns_the_first_effect_and_records_a_duplicate_attempt(tmp_path: Path) -> None:
    w = Witness(tmp_path / "w.db", script={})
    first = w.apply("charge", "k1", {"amount": 5})
    assert w.apply("charge", "k1", {"amount": 5}) == first
    assert [e.effect_id for e in w.effects()] == [first]
    assert [(a.outcome, a.effect_id) for a in w.attempts()] == [("applied", first), ("duplicate_attempt", first)]


def test_send_is_not_idempotent_so_a_repeated_key_leaves_two_effects(tmp_path: Path) -> None:
    w = Witness(tmp_path / "w.db", script={})
    ids = {w.send("message", "k1", {}), w.send("message", "k1", {})}
    assert len(ids) == 2
    assert [e.key for e in w.effects()] == ["k1", "k1"]


def test_undo_marks_the_effect_once_and_reports_an_unknown_effect(tmp_path: Path) -> None:
    w = Witness(tmp_path / "w.db", script={})
    effect = w.apply("charge", "k1", {})
    assert w.undo(effect, "undo-1") and w.undo(effect, "undo-1")
    assert not w.undo("charge_nope", "undo-2")
    [held] = w.effects()
    assert held.undone_at is not None and held.undone_key == "undo-1"
    assert [a.outcome for a in w.attempts()][1:] == ["undone", "undo_repeat", "undo_missing"]


def test_lookup_finds_the_effect_of_a_key_and_nothing_for_an_unknown_key(tmp_path: Path) -> None:
    w = Witness(tmp_path / "w.db", script={})
    effect = w.apply("charge", "k1", {"amount": 5})
    found = w.lookup("k1")
    assert found is not None and (found.effect_id, found.payload) == (effect, {"amount": 5})
    assert w.lookup("k2") is None


def test_the_script_applies_per_invocation_across_witness_instances_and_later_calls_succeed(tmp_path: Path) -> None:
    script: dict[str, list[object]] = {"t": ["fail", "commit_then_drop"]}
    with pytest.raises(WitnessDown, match="before any effect"):
        Witness(tmp_path / "w.db", script=script).perform("t", "charge", "k1", {})
    assert Witness(tmp_path / "w.db", script=script).effects() == []
    with pytest.raises(WitnessDown, match="committed but the response was lost"):
        Witness(tmp_path / "w.db", script=script).perform("t", "charge", "k1", {})
    w = Witness(tmp_path / "w.db", script=script)
    [committed] = w.effects()
    assert w.perform("t", "charge", "k1", {}) == committed.effect_id  # third call: succeeds, same key
    assert [a.outcome for a in w.attempts()] == ["failed", "applied", "duplicate_attempt"]
    assert w.invocations("t") == 3


def test_a_hanging_call_applies_nothing_until_its_release_file_appears(tmp_path: Path) -> None:
    release = tmp_path / "release"
    w = Witness(tmp_path / "w.db", script={"t": [{"mode": "hang", "release": str(release), "seconds": 20}]})
    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(w.perform("t", "charge", "k1", {})))
    worker.start()
    poll(lambda: w.invocations("t") == 1, what="the hanging call reached the witness")
    assert w.effects() == [] and worker.is_alive()
    release.touch()
    worker.join(20)
    assert [e.effect_id for e in w.effects()] == done


def test_the_same_key_applied_from_many_threads_at_once_makes_one_effect(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    Witness(path, script={})
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def apply() -> None:
        w = Witness(path, script={})
        barrier.wait(10)
        ids.append(w.apply("charge", "k1", {}))

    threads = [threading.Thread(target=apply) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(Witness(path, script={}).effects()) == 1


def test_an_unknown_mode_is_refused_when_the_script_is_loaded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown witness mode"):
        Witness(tmp_path / "w.db", script={"t": ["explode"]})
