"""The races many worker processes on one ledger found (issue 18), each pinned with real processes: workers paused
with SIGSTOP past their lease, duplicate deliveries closing one run, recoverers starting together, a Guard closed
under its heartbeat, and processes opening a new ledger file at the same moment.

Synchronisation is by state: a process stops itself at a named point (`GUARD_STOP_AT`) and the test waits until
it is stopped; racers start at one gate (a line on their stdin); the ledger and the witness are polled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from guard.ledger import CallState, Ledger
from guard.ledger.backend import BUSY_TIMEOUT_MS
from tests.chaos.harness import EVENT, REPO, TEAM, Lab, poll
from tests.chaos.invariants import Check

RUN = f"{TEAM}:{EVENT}"


def _assert_clean(result: Check, what: str) -> None:
    assert result.violations == [], f"{what}: " + "; ".join(f"{v.kind}: {v.detail}" for v in result.violations)


def _calls(lab: Lab, tool: str) -> list[str]:
    ledger = lab.ledger()
    try:
        return [c.state for c in ledger.calls_of(RUN) if c.tool == tool]
    finally:
        ledger.close()


def _run_state(lab: Lab) -> str | None:
    ledger = lab.ledger()
    try:
        run = ledger.get_run(RUN)
        return run.state if run is not None else None
    finally:
        ledger.close()


def test_a_worker_that_wakes_after_its_call_was_taken_over_leaves_the_run_to_be_finished_by_the_next_delivery(
    lab: Lab,
) -> None:
    release = lab.root / "release-charge"
    lab = Lab(lab.root, script={"witness.charge": [{"mode": "hang", "release": str(release), "seconds": 30}]})
    zombie = lab.start(worker="zombie")
    try:
        poll(lambda: lab.witness.invocations("witness.charge") == 1, what="the zombie's charge reached the witness")
        zombie.proc.send_signal(signal.SIGSTOP)  # paused past its lease, as by the OS or a debugger
        takeover = lab.run("recover", worker="w2")  # `guard recover` only: the run itself stays open
        assert takeover.code == 0, takeover.output
        poll(lambda: _calls(lab, "witness.charge") == ["completed"], what="the recoverer settled the charge")
    finally:
        release.touch()
        zombie.resume()
    woke = zombie.wait()

    assert woke.output.get("error_type") == "LeaseLost", woke.output
    assert _run_state(lab) == "running"  # the stale worker wrote nothing to the run
    again = lab.run(worker="w3")  # the next delivery of the event finishes the run
    assert (again.code, again.output["run_state"]) == (0, "completed"), again.output
    assert sorted(e.kind for e in lab.witness.effects()) == ["charge", "contact", "message"]
    check = lab.check()
    late = [v for v in check.violations if v.kind == "blind_rerun" and f"pid {zombie.proc.pid}" in v.detail]
    _assert_clean(Check(violations=[v for v in check.violations if v not in late]), "zombie after recover")


def test_a_duplicate_delivery_that_finds_its_run_closed_by_another_gets_the_recorded_outcome(lab: Lab) -> None:
    first = lab.start(worker="w1", stop="before_run_close")
    first.stopped()  # every call done, the run not yet closed
    second = lab.run(worker="w2")  # the same event, delivered again, closes the run meanwhile
    assert (second.code, second.output["run_state"]) == (0, "completed"), second.output
    first.resume()
    late = first.wait()

    assert (late.code, late.output["status"], late.output["run_state"]) == (0, "completed", "completed"), late.output
    assert late.output["results"] == second.output["results"]  # the recorded outcome, the same for both
    _assert_clean(lab.check(), "duplicate delivery")
    assert sorted(e.kind for e in lab.witness.effects()) == ["charge", "contact", "message"]


def _in_doubt_charges(lab: Lab, events: list[str]) -> None:
    """Leave each event's charge `in_doubt` after its effect reached the witness (the provider's answer was lost
    and there was no reconcile check at the time), every other call completed."""
    for event in events:
        result = lab.run(worker=f"first-{event}", event=event, extra=("--no-reconcile", "--amount", "1000000"))
        assert result.code == 2, result.output


def test_four_recoveries_at_once_each_take_every_in_doubt_call_over_once_and_all_finish(lab: Lab) -> None:
    never = lab.root / "never-released"
    events = [f"evt-{n}" for n in range(3)]
    # Each charge applies, then its answer comes after the 100 ms attempt timeout: in doubt.
    lab = Lab(
        lab.root,
        script={"witness.charge": [{"mode": "commit_then_hang", "release": str(never), "seconds": 0.4}] * len(events)},
    )
    _in_doubt_charges(lab, events)
    ledger = lab.ledger()
    try:
        doubtful = ledger.calls_in_state((CallState.IN_DOUBT,))
        assert len(doubtful) == len(events)
        recoverers = {"r0", "r1", "r2", "r3"}
        slow = lab.start("recover", worker="r0", stop="in_reconcile")
        slow.stopped()  # r0 has the first in-doubt call in hand, its reconcile check not yet answered
        others = [lab.start("recover", worker=f"r{n}") for n in (1, 2, 3)]
        done = [agent.wait() for agent in others]
        slow.resume()
        done.append(slow.wait())

        assert [r.code for r in done] == [0, 0, 0, 0], [r.output for r in done]
        for call in doubtful:
            settled = ledger.get_call(call.call_id)
            assert settled is not None and settled.state == CallState.COMPLETED
            takeovers = [
                json.loads(e.detail)["takeover"]
                for e in ledger.events_of(call.run_id)
                if e.call_id == call.call_id and "takeover" in (e.detail or "")
            ]
            assert len([w for w in takeovers if w in recoverers]) == 1, takeovers
        notes: list[str] = [note for r in done for note in r.output["recover"]["notes"]]
        skipped = [note for note in notes if "skipped" in note]
        assert any("r0 is reconciling it" in note for note in skipped), skipped
    finally:
        ledger.close()
    assert len([e for e in lab.witness.effects() if e.kind == "charge"]) == len(events)


def _racers(command: str, db: Path, count: int, *extra: str) -> list[tuple[int, str]]:
    """Start `count` racer processes, release them through one gate, and return (exit status, output) each."""
    argv = [sys.executable, "-m", "tests.chaos.racers", command, "--db", str(db), *extra]
    procs = [
        subprocess.Popen(
            [*argv, "--worker", f"r{n}"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(count)
    ]
    for proc in procs:  # each imported everything and now blocks on its stdin
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    out: list[tuple[int, str]] = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        out.append((proc.returncode, (stdout + stderr).decode()[-2000:]))
    return out


def test_eight_processes_opening_a_guard_at_once_on_a_new_ledger_file_all_start_and_migrate_it_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "fresh" / "guard.db"
    results = _racers("open", db, 8)

    assert [code for code, _ in results] == [0] * 8, results
    ledger = Ledger(f"sqlite:///{db}")
    try:
        assert len(ledger.list_runs(limit=100)) == 8
    finally:
        ledger.close()


def test_closing_a_guard_while_its_heartbeat_writes_never_crashes_the_process(tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    [(code, output)] = _racers("close", db, 1, "--rounds", "40")

    assert code == 0, output
    assert json.loads(output.splitlines()[0])["beats"] == 40


def _opener(db: Path, worker: str, **env: str) -> subprocess.Popen[bytes]:
    """A racer that opens a Guard on `db` and makes one call, released through its gate at once."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.chaos.racers", "open", "--db", str(db), "--worker", worker],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k not in ("GUARD_STOP_AT", "GUARD_MIGRATION_WAIT")} | env,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    return proc


def _stopped(proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "the migrator ended before its stop point"
    _, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
    return os.WIFSTOPPED(status)


def _outcome(proc: subprocess.Popen[bytes]) -> tuple[int, dict[str, str]]:
    stdout, stderr = proc.communicate(timeout=120)
    lines = stdout.decode().strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {"stderr": stderr.decode()[-2000:]}


def test_opening_a_guard_waits_for_a_migration_in_progress_longer_than_the_busy_timeout_and_finds_it_done(
    tmp_path: Path,
) -> None:
    db = tmp_path / "fresh" / "guard.db"
    migrator = _opener(db, "m", GUARD_STOP_AT="in_migration")
    poll(lambda: _stopped(migrator), what="the migrator stopped holding the migration's lock")
    opener = _opener(db, "o")
    started = time.monotonic()
    try:
        # The migration outlasts the busy timeout of every SQLite wait; the opener is still waiting, not failed.
        poll(
            lambda: opener.poll() is None and time.monotonic() - started > BUSY_TIMEOUT_MS / 1000 + 1,
            timeout=30,
            what="the opener waited past the busy timeout",
        )
    finally:
        os.kill(migrator.pid, signal.SIGCONT)

    assert _outcome(migrator)[0] == 0
    code, out = _outcome(opener)
    assert code == 0, out
    ledger = Ledger(f"sqlite:///{db}")
    try:
        assert sorted(r.run_id for r in ledger.list_runs(limit=10)) == [f"{TEAM}:open-m", f"{TEAM}:open-o"]
    finally:
        ledger.close()


def test_opening_a_guard_gives_up_on_a_migration_that_holds_its_lock_past_the_wait_and_says_so(
    tmp_path: Path,
) -> None:
    db = tmp_path / "fresh" / "guard.db"
    migrator = _opener(db, "m", GUARD_STOP_AT="in_migration")
    try:
        poll(lambda: _stopped(migrator), what="the migrator stopped holding the migration's lock")
        code, out = _outcome(_opener(db, "o", GUARD_MIGRATION_WAIT="0.5"))
    finally:
        os.kill(migrator.pid, signal.SIGCONT)

    assert (code, out["error_type"]) == (1, "LedgerUnavailable"), out
    assert "another process is migrating this ledger and still held its lock after 0.5s" in out["error"]
    assert "GUARD_MIGRATION_WAIT" in out["error"]
    assert _outcome(migrator)[0] == 0  # the migration itself finishes once it goes on
