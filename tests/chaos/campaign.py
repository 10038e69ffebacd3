"""The kill campaign: every hit of every crash point, in a clean run and in a run whose saga refunds the charge,
plus killed recoverers, the witness's faults (hang past the timeout, lost responses, a failing refund), and an
incident's repair killed in its loop and resumed (`tests.chaos.repairs`).

```
python -m tests.chaos.campaign [--repeat N] [--jobs J] [--keep DIR] [--backend sqlite,postgres]
```

The campaign runs once per backend (a SQLite file per lab; a database per lab on a throwaway PostgreSQL
cluster). Between its two halves it runs, one at a time, a worker SIGSTOPped past its lease that wakes after
another worker took its call over, and on PostgreSQL the server stopped with `pg_ctl stop -m immediate` (as a crash
would) and started again while a call is in flight. Each scenario has its own ledger and witness store; after
the kill a fresh worker recovers and runs the event again, then the invariants are checked. Every violation is
printed with its scenario; each backend's last line is `<backend> chaos: K kills, D duplicate effects, L lost rows,
I illegal transitions, S left started, R reconciled, V to review, N server restarts, P repair kills, Q repeated
repairs` (a repeated repair is a refund that reached the witness again for a charge already refunded: none may
happen at the points outside the refund's call, see `tests.chaos.repairs`).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from guard.ledger import Ledger, upgrade
from tests.chaos.harness import (
    KILL_POINTS,
    NEW_LEDGER,
    SAGA,
    Lab,
    calibrate,
    forget_template,
    kill_and_recover,
    poll,
    template,
    tool_of,
)
from tests.chaos.invariants import Check
from tests.chaos.repairs import EVENTS as REPAIR_EVENTS
from tests.chaos.repairs import REPAIR_POINTS, repair_kill
from tests.pg_cluster import PgCluster, server_bin_dir

__all__ = ["Scenario", "Tally", "ledgers", "main", "scenarios"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One thing to do to a fresh lab, named for the report; `run` returns (kills, check)."""

    name: str
    run: Callable[[Path], tuple[int, Check]]


@dataclass
class Tally:
    kills: int = 0
    duplicates: int = 0
    blind_reruns: int = 0
    lost: int = 0
    illegal: int = 0
    left_started: int = 0
    reconciled: int = 0
    to_review: int = 0
    scenarios: int = 0
    restarts: int = 0  # of the PostgreSQL server (pg_ctl stop -m immediate, then start)
    repair_kills: int = 0
    repeated_repairs: int = 0  # refunds that reached the witness again where none may (outside the refund's call)
    violations: list[str] = field(default_factory=list[str])

    def add(self, name: str, kills: int, check: Check) -> None:
        self.scenarios += 1
        self.kills += kills
        self.repair_kills += kills if "repair kill" in name else 0
        self.repeated_repairs += check.repeated_repairs
        self.duplicates += check.duplicates
        self.blind_reruns += check.blind_reruns
        self.lost += check.lost
        self.illegal += check.illegal
        self.left_started += check.left_started
        self.reconciled += check.reconciled
        self.to_review += check.to_review
        self.violations.extend(f"{name}: {v.kind}: {v.detail}" for v in check.violations)

    def line(self) -> str:
        return (
            f"chaos: {self.kills} kills, {self.duplicates} duplicate effects, {self.lost} lost rows, "
            f"{self.illegal} illegal transitions, {self.left_started} left started, {self.reconciled} "
            f"reconciled, {self.to_review} to review, {self.restarts} server restarts, {self.repair_kills} repair "
            f"kills, {self.repeated_repairs} repeated repairs"
        )


def _kill(
    point: str, nth: int, tool: str | None, script: Mapping[str, list[object]] | None, kill_recoverer: bool = False
) -> Callable[[Path], tuple[int, Check]]:
    def run(root: Path) -> tuple[int, Check]:
        kill = kill_and_recover(root, point, nth, tool=tool, script=script, kill_recoverer=kill_recoverer)
        if not kill.first.killed:
            raise RuntimeError(f"{point}@{nth} did not kill the agent: {kill.first.stderr[-1000:]}")
        kills = 1 + (1 if kill.extra is not None and kill.extra.killed else 0)
        return kills, kill.result

    return run


def _fault(
    script: Mapping[str, list[object]], extra: tuple[str, ...] = (), release: str | None = None
) -> Callable[[Path], tuple[int, Check]]:
    def run(root: Path) -> tuple[int, Check]:
        lab = Lab(root, script=script)
        agent = lab.start(extra=extra)
        if release is not None:
            ledger = lab.ledger()
            try:
                _settled(ledger, lab)  # the provider answers late: the first attempt commits after this
            finally:
                ledger.close()
            (root / release).touch()
        agent.wait()
        lab.run(worker="w2", extra=("--recover", *extra))
        return 0, lab.check()

    return run


def _settled(ledger: Ledger, lab: Lab) -> None:
    """Wait until the timed-out charge is no longer `started` in the ledger."""
    poll(
        lambda: [c for c in ledger.calls_of("chaos:evt-1") if c.tool == "witness.charge" and c.state != "started"],
        what="the timed-out charge settled",
    )


def scenarios(work: Path) -> list[Scenario]:
    """The matrix: each hit of each point (clean run and saga run), killed recoverers, and the faults."""
    out: list[Scenario] = []
    for label, script in (("run", None), ("saga", SAGA)):
        for point in KILL_POINTS:
            windows = calibrate(work / f"calibrate-{label}-{point}", point, script=script)
            total = max((end for _, end in windows.values()), default=0)
            for nth in range(1, total + 1):
                tool = tool_of(windows, nth)
                out.append(Scenario(f"{label} kill {point}@{nth} in {tool}", _kill(point, nth, tool, script)))
    for nth, tool in ((3, "witness.charge"), (4, "witness.message")):
        out.append(
            Scenario(
                f"run kill before_tool@{nth} in {tool}, recoverer killed after its claim",
                _kill("before_tool", nth, tool, None, kill_recoverer=True),
            )
        )
    hang: dict[str, list[object]] = {"witness.charge": [{"mode": "hang", "release": "RELEASE", "seconds": 20}]}
    out.append(
        Scenario(
            "fault: charge hangs past its 100ms timeout, then commits",
            lambda root: _fault(_released(hang, root), ("--amount", "1000000"), "release")(root),
        )
    )
    for tool in ("witness.upsert", "witness.charge", "witness.message"):
        out.append(Scenario(f"fault: {tool} commits, then the response is lost", _fault({tool: ["commit_then_drop"]})))
    out.append(Scenario("fault: the refund fails every attempt", _fault({**SAGA, "witness.refund": ["fail", "fail"]})))
    for point in REPAIR_POINTS:
        for nth in range(1, len(REPAIR_EVENTS) + 1):
            out.append(Scenario(f"repair kill {point}@{nth}", repair_kill(point, nth)))
    return out


_HANG_CHARGE = "witness.charge"


def _hanging(root: Path) -> tuple[Lab, Path]:
    """A lab whose charge blocks until `<root>/release` appears, then applies."""
    release = root / "release"
    return Lab(root, script={_HANG_CHARGE: [{"mode": "hang", "release": str(release), "seconds": 30}]}), release


def _charging(lab: Lab) -> None:
    poll(lambda: lab.witness.invocations(_HANG_CHARGE) == 1, timeout=60, what="the charge reached the witness")


def zombie(root: Path) -> tuple[int, Check]:
    """A worker SIGSTOPped inside its charge, past its lease; another worker takes the call over and settles it;
    the first wakes, is refused on its next write (LeaseLost) and writes nothing more; the next delivery finishes
    the run. Its charge reaching the witness late is the stale worker's, not a re-run (left out of the check)."""
    lab, release = _hanging(root)
    stale = lab.start(worker="zombie")
    try:
        _charging(lab)
        stale.proc.send_signal(signal.SIGSTOP)
        takeover = lab.run("recover", worker="w2")
        ledger = lab.ledger()
        try:
            poll(
                lambda: [
                    c
                    for c in ledger.calls_of("chaos:evt-1")
                    if c.tool == _HANG_CHARGE and c.state not in ("started", "in_doubt")
                ],
                what="the recoverer settled the charge",
            )
        finally:
            ledger.close()
    finally:
        release.touch()
        stale.resume()
    woke = stale.wait()
    lab.run(worker="w3")
    check = lab.check()
    late = [v for v in check.violations if v.kind == "blind_rerun" and f"pid {stale.proc.pid}" in v.detail]
    check.violations = [v for v in check.violations if v not in late]
    check.blind_reruns -= len(late)
    if takeover.code != 0 or woke.output.get("error_type") != "LeaseLost":
        check.add("harness", f"takeover exit {takeover.code}; the stale worker woke with {woke.output}")
    return 0, check


def restart(cluster: PgCluster) -> Callable[[Path], tuple[int, Check]]:
    """The PostgreSQL server stopped at once (`pg_ctl stop -m immediate`) and started again while a worker's charge
    is in flight (its `started` committed, the tool not yet returned): the worker reconnects by itself and records
    the outcome once; the next delivery finishes the run."""

    def run(root: Path) -> tuple[int, Check]:
        lab, release = _hanging(root)
        agent = lab.start(worker="w1")
        try:
            _charging(lab)
            # A checkpoint first keeps the crash recovery short (every lab's database is on this server); the
            # stop is still a crash: the charge's `started` is committed, its outcome not yet.
            cluster.sql("CHECKPOINT")
            try:
                cluster.restart()
            except RuntimeError:  # pg_ctl gave up waiting; the server goes on recovering: wait for it
                poll(lambda: _accepting(cluster), timeout=600, what="the restarted server accepts connections")
        finally:
            release.touch()
        agent.wait()
        lab.run(worker="w2", extra=("--recover",))
        return 0, lab.check()

    return run


def _accepting(cluster: PgCluster) -> bool:
    try:
        cluster.sql("SELECT 1")
    except Exception:  # still starting: recovery not done yet
        return False
    return True


def _released(script: Mapping[str, list[object]], root: Path) -> dict[str, list[object]]:
    """The script with its RELEASE placeholder pointing at `<root>/release`."""

    def step(s: object) -> object:
        return {**cast(dict[str, object], s), "release": str(root / "release")} if isinstance(s, dict) else s

    return {tool: [step(s) for s in steps] for tool, steps in script.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.campaign")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep every lab under this directory")
    parser.add_argument(
        "--backend",
        default="sqlite,postgres",
        help="comma-separated: sqlite, postgres (a throwaway cluster of the campaign's own)",
    )
    args = parser.parse_args(argv)
    failed = False
    for backend in args.backend.split(","):
        tally = _campaign(args, backend)
        for v in tally.violations:
            print(v)
        print(
            f"{backend}: {tally.scenarios} scenarios; {tally.blind_reruns} blind re-runs of non-repeat-safe "
            "calls (a key that already had its effect reached the witness again)"
        )
        print(f"{backend} {tally.line()}")
        sys.stdout.flush()
        failed = failed or bool(tally.violations)
    return 1 if failed else 0


def _campaign(args: argparse.Namespace, backend: str) -> Tally:
    """Every scenario `args.repeat` times, each lab's ledger on `backend`."""
    work = (args.keep / backend) if args.keep else Path(tempfile.mkdtemp(prefix=f"chaos-{backend}-"))
    tally = Tally()
    try:
        with ledgers(work, backend) as cluster:
            matrix = scenarios(work)
            jobs = [(rep, i, s) for rep in range(args.repeat) for i, s in enumerate(matrix)]

            def one(job: tuple[int, int, Scenario]) -> tuple[str, int, Check]:
                rep, i, s = job
                name = f"[{backend} {rep + 1}/{args.repeat}] {s.name}"
                try:
                    kills, check = s.run(work / f"r{rep}" / f"s{i:03d}")
                except Exception as exc:  # a scenario that could not run is reported, and the campaign goes on
                    check = Check()
                    check.add("harness", f"{type(exc).__name__}: {str(exc)[-500:]}")
                    return name, 0, check
                return name, kills, check

            serial = [Scenario("a worker SIGSTOPped past its lease wakes after the takeover", zombie)]
            if cluster is not None:
                serial.append(
                    Scenario("server stopped -m immediate and started while a charge is in flight", restart(cluster))
                )
            half = len(jobs) // 2
            with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
                for name, kills, check in pool.map(one, jobs[:half]):
                    tally.add(name, kills, check)
                for rep in range(args.repeat):  # alone: a restart would cut every other lab's connections too
                    for i, s in enumerate(serial):
                        name, kills, check = one((rep, len(matrix) + i, s))
                        tally.add(name, kills, check)
                        tally.restarts += s.name.startswith("server")
                for name, kills, check in pool.map(one, jobs[half:]):
                    tally.add(name, kills, check)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return tally


@contextmanager
def ledgers(work: Path, backend: str) -> Generator[PgCluster | None]:
    """Where one backend's labs get their ledgers while the block runs: on SQLite a migrated template file in
    `work` that each lab copies; on PostgreSQL a throwaway cluster (yielded) whose template database each lab
    copies. On leaving, the cluster is stopped and removed and the process forgets both, so a later backend's
    labs (in either order) never reach a ledger this one removed."""
    work.mkdir(parents=True, exist_ok=True)
    template(work)
    cluster = _postgres(NEW_LEDGER) if backend == "postgres" else None
    try:
        yield cluster
    finally:
        NEW_LEDGER.clear()
        forget_template()
        if cluster is not None:
            cluster.remove()


def _postgres(factory: list[Callable[[], str]]) -> PgCluster:
    """A throwaway PostgreSQL cluster with a migrated template; every new lab gets a database copied from it."""
    bin_dir = server_bin_dir()
    if bin_dir is None:
        raise SystemExit("chaos: no PostgreSQL server binaries; run .ci/ensure-postgres or --backend sqlite")
    cluster = PgCluster(bin_dir).start()
    upgrade(cluster.create_database("chaos_template"))
    numbers = itertools.count(1)
    lock = threading.Lock()

    def new_ledger() -> str:
        with lock:
            n = next(numbers)
        return cluster.create_database(f"lab{n}", template="chaos_template")

    factory.append(new_ledger)
    return cluster


if __name__ == "__main__":
    raise SystemExit(main())
