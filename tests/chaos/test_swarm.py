"""Many worker processes on one ledger at the same moment (issue 13): the same keys offered by every process, one
approval decided by every process, stop rules counted across processes. On PostgreSQL these writers no longer
queue on one ledger-wide lock, so each promise is pinned here with real processes released through one gate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

from guard.canonical import args_hash
from guard.ledger import CallRequest, Ledger, new_id
from tests.chaos.harness import REPO, Lab
from tests.chaos.swarm import TEAM

RACERS = 6


def _race(lab: Lab, command: str, workers: list[str], *extra: str, gates: int = 0) -> list[dict[str, Any]]:
    """Start one racer per worker, release them through the start gate, then through `gates` more (each racer
    says `offered` at each), and return each one's JSON output (failing on any racer's error)."""
    argv = [
        sys.executable,
        "-m",
        "tests.chaos.swarm",
        command,
        "--url",
        lab.ledger_url,
        "--witness",
        str(lab.store),
        *extra,
    ]
    procs = [
        subprocess.Popen(
            [*argv, "--worker", w], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for w in workers
    ]
    try:
        for said in ["ready"] + ["offered"] * gates:
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line == f"{said}\n".encode(), (line + proc.stdout.read()).decode()[-3000:]
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
        out: list[dict[str, Any]] = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=180)
            assert proc.returncode == 0, (stdout + stderr).decode()[-3000:]
            out.append(json.loads(stdout.decode().splitlines()[-1]))
        return out
    finally:
        for proc in procs:  # a racer left behind by a failed assertion: ended, its pipes closed
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _clean(lab: Lab) -> None:
    check = lab.check()
    assert check.violations == [], "; ".join(f"{v.kind}: {v.detail}" for v in check.violations)
    assert check.chain_ok


def test_processes_offering_the_same_keys_at_once_run_each_key_exactly_once(lab: Lab) -> None:
    keys = 8
    outs = _race(lab, "deliver", [f"w{n}" for n in range(RACERS)], "--keys", str(keys), gates=2)

    per_key = Counter(e.key for e in lab.witness.effects())
    assert len(per_key) == 2 * keys and set(per_key.values()) == {1}, per_key  # one run's keys, then shared keys
    assert sum(o["ran"] for o in outs) == 2 * keys
    assert sum(o["answered"] + o["in_flight"] for o in outs) == 2 * keys * RACERS
    _clean(lab)  # no lost rows, only legal transitions, every stream's chain and every row's claim verified


def test_stop_rules_count_every_process_of_the_team_exactly(lab: Lab) -> None:
    calls = 4
    outs = _race(lab, "brake", [f"w{n}" for n in range(RACERS)], "--calls", str(calls), gates=2)

    # `max_calls: {witness.note: 5}` in the one run all of them offer in; `rate: witness.send 7/h` for the team.
    assert sum(o["note"] for o in outs) == 5, outs
    assert sum(o["note_denied"] for o in outs) == RACERS * calls - 5
    assert sum(o["send"] for o in outs) == 7, outs
    assert sum(o["send_denied"] for o in outs) == RACERS * calls - 7
    assert Counter(e.kind for e in lab.witness.effects()) == {"note": 5, "send": 7}
    _clean(lab)


def _approval(lab: Lab, quorum: int) -> tuple[str, str]:
    """A call waiting for `quorum` approvals of role ops: (approval id, call id)."""
    ledger = Ledger(lab.ledger_url)
    try:
        run_id = f"{TEAM}:approve-{quorum}"
        ledger.open_run(run_id, TEAM, actor="agent")
        args = {"n": 1}
        offer = ledger.offer(
            CallRequest(
                call_id=new_id("call"),
                run_id=run_id,
                team=TEAM,
                tool="witness.charge",
                args_json=json.dumps(args),
                args_hash=args_hash(args),
                idempotency_key=f"approve-{quorum}",
                verdict="approve",
                side_effect="compensable",
                rule="charge",
                reason="",
                policy_version="v",
                actor="agent",
                approval_roles=("ops",),
                quorum=quorum,
            )
        )
        assert offer.kind == "awaiting" and offer.approval_id is not None
        return offer.approval_id, offer.call_id
    finally:
        ledger.close()


def test_reviewers_in_several_processes_approving_one_approval_leave_one_winner(lab: Lab) -> None:
    approval_id, call_id = _approval(lab, quorum=1)
    outs = _race(lab, "decide", [f"rev-{n}" for n in range(RACERS)], "--approval", approval_id)

    assert sum(1 for o in outs if o.get("settled")) == 1, outs
    assert sorted(o.get("refused", "") for o in outs if not o.get("settled")) == ["already_decided"] * (RACERS - 1)
    ledger = Ledger(lab.ledger_url)
    try:
        approval = ledger.get_approval(approval_id)
        assert approval is not None and approval.state == "approved" and len(approval.decider_list) == 1
        call = ledger.get_call(call_id)
        assert call is not None and call.state == "approved"
    finally:
        ledger.close()
    _clean(lab)


def test_a_quorum_reached_by_votes_cast_in_several_processes_at_once_settles_the_approval_once(lab: Lab) -> None:
    approval_id, call_id = _approval(lab, quorum=RACERS)
    outs = _race(lab, "decide", [f"rev-{n}" for n in range(RACERS)], "--approval", approval_id)

    assert sum(1 for o in outs if o.get("settled")) == 1, outs  # the last vote counted every other one
    ledger = Ledger(lab.ledger_url)
    try:
        approval = ledger.get_approval(approval_id)
        assert approval is not None and approval.state == "approved"
        assert sorted(approval.decider_list) == sorted(f"rev-{n}" for n in range(RACERS))
        call = ledger.get_call(call_id)
        assert call is not None and call.state == "approved"
    finally:
        ledger.close()
    _clean(lab)
