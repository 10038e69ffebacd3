"""The invariant checker on ledgers built by hand: a clean run passes, and each kind of damage is caught."""

from __future__ import annotations

from typing import Any

import pytest

from guard import Guard, current_call
from guard.ledger import EventRecord
from tests.chaos.harness import POLICIES, TEAM, Lab
from tests.chaos.invariants import history_violations


def _key() -> str:
    call = current_call()
    assert call is not None and call.idempotency_key is not None
    return call.idempotency_key


def _clean_run(lab: Lab) -> dict[str, Any]:
    """lookup -> upsert -> charge through Guard on the lab's ledger, effects at the lab's witness."""
    w = lab.witness
    with Guard(policies=POLICIES, db=lab.ledger_url, log_level="error") as g:

        @g.tool(name="witness.lookup")
        def lookup(account: str) -> dict[str, Any]:
            w.read("account", account)
            return {"known": True}

        @g.tool(name="witness.upsert", external_ids={"contact": "contact_id"})
        def upsert(account: str, name: str) -> dict[str, Any]:
            return {"contact_id": w.apply("contact", _key(), {"account": account, "name": name})}

        @g.tool(name="witness.charge", external_ids={"charge": "charge_id"})
        def charge(account: str, amount: int) -> dict[str, Any]:
            return {"charge_id": w.apply("charge", _key(), {"account": account, "amount": amount}), "key": _key()}

        with g.run(TEAM, source_event_id="hand"):
            lookup(account="a")
            upsert(account="a", name="Ada")
            return charge(account="a", amount=5)


def _sql(lab: Lab, statement: str, params: tuple[Any, ...] = ()) -> None:
    """An edit behind Guard's back, on whichever database holds the lab's ledger."""
    ledger = lab.ledger()
    try:
        with ledger.conns.write() as cur:
            cur.execute(statement, params)
    finally:
        ledger.close()


def test_a_clean_run_passes_every_invariant_with_each_effect_recorded_completed(lab: Lab) -> None:
    _clean_run(lab)
    result = lab.check()
    assert result.violations == []
    assert (result.effects, result.calls, result.left_started, result.chain_ok) == (2, 3, 0, True)
    assert dict(result.effect_states) == {"completed": 2}


def test_two_effects_under_one_key_are_a_duplicate(lab: Lab) -> None:
    charged = _clean_run(lab)
    lab.witness.send("charge_copy", charged["key"], {})
    lab.witness.send("charge_copy", charged["key"], {})
    result = lab.check()
    assert result.duplicates == 1
    assert [v.kind for v in result.violations if v.kind == "duplicate"] == ["duplicate"]


def test_a_compensable_call_reaching_the_witness_again_with_its_key_is_a_blind_rerun(lab: Lab) -> None:
    charged = _clean_run(lab)
    lab.witness.apply("charge", charged["key"], {})
    result = lab.check()
    assert (result.blind_reruns, result.duplicates, result.lost) == (1, 0, 0)


def test_an_effect_without_a_ledger_call_is_a_lost_record(lab: Lab) -> None:
    _clean_run(lab)
    lab.witness.apply("charge", "key-nobody-recorded", {})
    result = lab.check()
    assert result.lost == 1 and result.effect_states["no_call"] == 1


@pytest.mark.tampers
def test_a_completed_call_naming_another_id_than_the_witness_holds_is_lost_and_a_phantom(lab: Lab) -> None:
    _clean_run(lab)
    _sql(lab, "UPDATE calls SET external_ids = ? WHERE tool = 'witness.charge'", ('{"charge": "charge_other"}',))
    result = lab.check()
    assert result.lost == 2
    assert (result.effect_states["completed_wrong_id"], result.effect_states["phantom"]) == (1, 1)


def test_an_effect_undone_behind_a_completed_call_is_a_lost_record(lab: Lab) -> None:
    charged = _clean_run(lab)
    lab.witness.undo(charged["charge_id"], "someone-else")
    assert lab.check().effect_states["completed_but_undone"] == 1


@pytest.mark.tampers
def test_a_call_row_moved_without_its_event_is_illegal_and_a_started_call_is_left_in_flight(lab: Lab) -> None:
    _clean_run(lab)
    _sql(lab, "UPDATE calls SET state = 'started' WHERE tool = 'witness.charge'")
    result = lab.check()
    assert (result.illegal, result.left_started) == (1, 1)
    assert any("is started but its events end at completed" in v.detail for v in result.violations)


@pytest.mark.tampers
def test_a_failed_call_whose_effect_exists_is_a_lost_record(lab: Lab) -> None:
    _clean_run(lab)
    _sql(lab, "UPDATE calls SET state = 'failed' WHERE tool = 'witness.charge'")
    result = lab.check()
    assert result.effect_states["failed_with_effect"] == 1


@pytest.mark.tampers
def test_an_edited_event_breaks_the_chain(lab: Lab) -> None:
    _clean_run(lab)
    _sql(lab, "UPDATE events SET actor = 'mallory' WHERE id = (SELECT MIN(id) FROM events)")
    result = lab.check()
    assert not result.chain_ok
    assert [v.kind for v in result.violations] == ["chain"]


def _event(
    i: int, entity: str, src: str | None, dst: str, call_id: str | None = "c1", detail: str = "{}"
) -> EventRecord:
    return EventRecord(
        i,
        "r1",
        call_id if entity == "call" else None,
        float(i),
        "t",
        entity,
        src,
        dst,
        detail,
        "",
        "run:r1",
        i,
        None,
        None,
        None,
    )


def test_history_accepts_a_legal_path_and_names_a_jump_and_a_gap() -> None:
    legal = [
        _event(1, "run", None, "running"),
        _event(2, "call", None, "offered"),
        _event(3, "call", "offered", "approved"),
        _event(4, "call", "approved", "started"),
        _event(5, "call", "started", "started"),
        _event(6, "call", "started", "completed"),
        _event(7, "run", "running", "completed"),
    ]
    assert history_violations(legal, {"c1": "completed"}, "r1", "completed") == []
    jump = [*legal[:4], _event(5, "call", "started", "rolled_back"), legal[-1]]
    [problem] = history_violations(jump, {"c1": "rolled_back"}, "r1", "completed")
    assert "started -> rolled_back is not in CALL_TRANSITIONS" in problem
    gap = [*legal[:3], _event(4, "call", "started", "completed"), legal[-1]]
    [problem] = history_violations(gap, {"c1": "completed"}, "r1", "completed")
    assert "starts from started, the call was approved" in problem


def test_history_walks_each_step_of_a_first_event_that_names_its_path_and_names_an_illegal_step() -> None:
    first = _event(2, "call", None, "started", detail='{"path": ["offered", "approved", "started"]}')
    legal = [
        _event(1, "run", None, "running"),
        first,
        _event(3, "call", "started", "completed"),
        _event(4, "run", "running", "completed"),
    ]
    assert history_violations(legal, {"c1": "completed"}, "r1", "completed") == []
    skipped = _event(2, "call", None, "started", detail='{"path": ["offered", "started"]}')
    [problem] = history_violations([legal[0], skipped, *legal[2:]], {"c1": "completed"}, "r1", "completed")
    assert "offered -> started is not in CALL_TRANSITIONS" in problem
