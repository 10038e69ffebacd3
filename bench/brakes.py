# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""Figures of issue 15's brakes, on SQLite files in a temporary folder (python -m bench.brakes):

1. the cost per guarded call of each stop rule on named arguments (records per run, records per window,
   duplicates, blank fields), against the same call with no stop rule: the median of N calls each;
2. `guard policy replay` over 100,000 recorded calls (seeded with bench/seed.py) under a changed policy: the
   read of the stored facts and the decisions, timed apart.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

RULES = {
    "none": "",
    "records per run": "  records:\n    - {name: r, tools: [bench.noop], field: customer_id, max: 1000000}\n",
    "records per window": "  records:\n    - {name: r, tools: [bench.noop], field: customer_id, max: 1000000, "
    "per: 1h}\n",
    "duplicates": "  duplicates:\n    - {name: d, tools: [bench.noop], fields: [to, i], within: 10m}\n",
    "blank fields": "  blank_fields:\n    - {name: b, tools: [bench.noop], fields: [to, customer_id]}\n",
}
POLICY = """\
team: bench
reviewers: {{alice: [finance]}}
{stop}rules:
  - {{name: noop, tools: [bench.noop], class: idempotent}}
  - {{name: invoice, tools: [billing.create_invoice], class: compensable}}
  - {{name: lookup, tools: [crm.lookup], class: read}}
  - {{name: lead, tools: [crm.upsert_lead], class: idempotent}}
  - {{name: mail, tools: [mail.send], class: irreversible, approval: {{roles: [finance]}}}}
"""


def _policy(folder: Path, stop: str, teams: tuple[str, ...] = ("bench",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for team in teams:
        text = POLICY.format(stop=f"stop:\n{stop}" if stop else "").replace("team: bench", f"team: {team}")
        (folder / f"{team}.yaml").write_text(text)
    return folder


def per_call(tmp: Path, n: int) -> dict[str, float]:
    from guard import Guard

    out: dict[str, float] = {}
    for label, stop in RULES.items():
        folder = _policy(tmp / f"p-{len(out)}", stop)
        g = Guard(policies=folder, db=f"sqlite:///{tmp / f'cost-{len(out)}.db'}", log_level="warning")
        noop = g.tool(lambda **kw: None, name="bench.noop")
        medians: list[float] = []
        for rep in range(5):  # five runs of n/5 calls; the least disturbed median of the five (a shared machine)
            times: list[float] = []
            with g.run("bench"):
                for i in range(rep * n, rep * n + n // 5):
                    started = time.perf_counter()
                    noop(i=i, to=f"u{i % 50}@x.io", customer_id=f"c{i % 200}")
                    times.append(time.perf_counter() - started)
            medians.append(statistics.median(times))
        g.close()
        out[label] = min(medians) * 1e6
    return out


def sql_cost(tmp: Path, n: int) -> dict[str, float]:
    """What each rule adds to one offer, apart from the disk flush every call pays anyway: reading the values and
    their digest (runtime), and judging and counting them in the offer's transaction (ledger), timed over `n`
    calls inside one transaction, per call. On a shared machine this is far steadier than whole calls."""
    from guard import Guard
    from guard.ledger.field_stops import count_marks, field_stop_trip
    from guard.runtime.doors import ledger_of
    from guard.runtime.stop_marks import stop_marks

    out: dict[str, float] = {}
    for label, stop in RULES.items():
        if not stop:
            continue
        folder = _policy(tmp / f"s-{len(out)}", stop)
        g = Guard(policies=folder, db=f"sqlite:///{tmp / f'sql-{len(out)}.db'}", log_level="warning")
        best = float("inf")
        for rep in range(3):
            with ledger_of(g).conns.write() as cur:  # the Guard's own connections, as its offers use
                started = time.perf_counter()
                for i in range(rep * n, rep * n + n):
                    args = {"i": i, "to": f"u{i % 50}@x.io", "customer_id": f"c{i % 200}"}
                    decision = g.policies.classify("bench", "bench.noop", args)
                    marks = stop_marks(decision, "bench.noop", args, g.arguments)
                    now = time.time()
                    if field_stop_trip(cur, "bench", "bench.noop", "run-1", marks, now, "bench") is None:
                        count_marks(cur, "bench", "run-1", marks, now)
                best = min(best, (time.perf_counter() - started) / n)
        g.close()
        out[label] = best * 1e6
    return out


def replay_figure(tmp: Path, n: int) -> tuple[float, float, int, int]:
    from bench.seed import TEAMS, seed_calls
    from guard import Guard
    from guard.ledger import Ledger
    from guard.ledger.replay_facts import recorded_calls
    from guard.policy import PolicySet
    from guard.runtime.replay import replay

    db = tmp / "replay.db"
    Guard(policies=_policy(tmp / "old", ""), db=f"sqlite:///{db}", log_level="warning").close()  # migrates
    conn = sqlite3.connect(db)
    seed_calls(conn, n)
    conn.close()
    # The changed policy: lookups become idempotent (a new class) and a duplicates rule counts every call.
    changed = _policy(tmp / "new", RULES["duplicates"].replace("fields: [to, i]", "fields: [customer]"), TEAMS)
    for path in changed.iterdir():
        path.write_text(
            path.read_text().replace(
                "{name: lookup, tools: [crm.lookup], class: read}",
                "{name: lookup, tools: [crm.lookup], class: idempotent}",
            )
        )
    ledger = Ledger(f"sqlite:///{db}")
    started = time.perf_counter()
    records = recorded_calls(ledger.conns)
    read = time.perf_counter() - started
    report = replay(records, PolicySet.load_dir(changed))
    ledger.close()
    return read, report.seconds, report.calls, len(report.changed)


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 2000
    with tempfile.TemporaryDirectory() as tmp:
        sql = sql_cost(Path(tmp), n)
        print(f"added to one offer by each rule (values, digest, judge and count in the transaction), best of 3 x {n}:")
        for label, us in sql.items():
            print(f"  {label:<20} {us:8.1f} us")
        costs = per_call(Path(tmp), n)
        base = costs["none"]
        print(f"whole guarded call, least disturbed median of 5 x {n // 5} (SQLite file, disk flush included):")
        for label, us in costs.items():
            extra = "" if label == "none" else f"  (+{us - base:.0f} us)"
            print(f"  {label:<20} {us:8.0f} us{extra}")
        read, decide, calls, changed = replay_figure(Path(tmp), 100_000)
        print(
            f"replay of {calls} recorded calls: read {read:.2f}s, decide {decide:.2f}s, total {read + decide:.2f}s "
            f"({changed} would change)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
