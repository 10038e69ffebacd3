# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench.workers` — many worker processes on one SQLite ledger file.

For 1, 2, 4 and 8 worker processes (`--procs`), each on a fresh ledger, every process makes guarded no-op calls
for `--seconds` seconds, `--calls` calls per run (each run opened and closed: its open and close are part of
the figure); then the same number of processes run the raw floor (two commits per call, `bench/floor.py`) on
the same file. Printed per N: guarded calls/s, raw two-commit lifecycles/s, p50/p99/max of one guarded call
(the run's open and close counted into the call that follows or precedes them), CPU ms per guarded call, and
errors by kind. All processes start at one gate (a line on their stdin) once every one of them is ready.

Runs in any venv that has Guard (no peers needed): `.venv/bin/python -m bench.workers`.

Where the CPU goes: `--profile PREFIX` adds a line per N with the CPU per call of each kind of thread, SQLite's
page reads per call, the waits in the writers' queue and the context switches (`bench/workers_probe.py`);
`--cprofile` also writes a CPU-time cProfile per worker (`PREFIX-<N>-w<k>.prof`). `--separate` gives each worker
a ledger file of its own (what the machine adds, with nothing shared); `--no-raw` skips the raw floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "bench" / "policies"


def _guarded(
    db: str, seconds: float, calls: int, worker: str, profile: str | None = None, cprofile: bool = False
) -> dict[str, Any]:
    from bench.workers_probe import Probe
    from guard import Guard

    g = Guard(policies=str(POLICY_DIR), db=f"sqlite:///{db}", log_level="error", worker_id=worker)
    noop = g.tool(lambda i: None, name="bench.noop")
    lat: list[float] = []
    errors: Counter[str] = Counter()
    _gate()
    probe = Probe(g, f"{profile}-{worker}", cprofile) if profile else None
    cpu0, end, n = time.process_time(), time.monotonic() + seconds, 0
    while time.monotonic() < end:
        try:
            t = time.perf_counter()
            with g.run("bench", source_event_id=f"{worker}-{n}"):
                for i in range(calls):
                    noop(i=i)
                    lat.append(time.perf_counter() - t)
                    t = time.perf_counter()
            lat[-1] += time.perf_counter() - t  # the run's close, counted into its last call
        except Exception as exc:
            errors[type(exc).__name__] += 1
        n += 1
    cpu = time.process_time() - cpu0
    found = probe.stop() if probe is not None else {}
    g.close()
    return {"lat": lat, "cpu": cpu, "errors": dict(errors), "probe": found}


def _raw(db: str, seconds: float, worker: str) -> dict[str, Any]:
    import sqlite3

    from bench.floor import connect

    conn = connect(db)
    errors: Counter[str] = Counter()
    lat: list[float] = []
    base = (int(worker[1:]) + 1) * 10**9
    _gate()
    end, i = time.monotonic() + seconds, base
    while time.monotonic() < end:
        t = time.perf_counter()
        i += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO floor_calls(id, state, args_json, at) VALUES (?, 'running', '{}', 0.0)", (i,))
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE floor_calls SET state='succeeded', result_json='null' WHERE id=?", (i,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            errors[type(exc).__name__ + ": " + str(exc)] += 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        lat.append(time.perf_counter() - t)
    conn.close()
    return {"lat": lat, "cpu": 0.0, "errors": dict(errors)}


def _gate() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()


def _spawn(
    kind: str, db: Path, procs: int, seconds: float, calls: int, probe: list[str], separate: bool = False
) -> list[dict[str, Any]]:
    argv = [
        sys.executable,
        "-m",
        "bench.workers",
        "--worker-kind",
        kind,
        "--seconds",
        str(seconds),
        "--calls",
        str(calls),
        *(probe if kind == "guarded" else []),
    ]
    children = [
        subprocess.Popen(
            [*argv, "--worker", f"w{n}", "--db", str(_file(db, n) if separate else db)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for n in range(procs)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
    return [json.loads(child.communicate()[0]) for child in children]


def _file(db: Path, n: int) -> Path:
    """Worker `n`'s own ledger file (`--separate`)."""
    return db.with_name(f"{db.stem}-w{n}{db.suffix}")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(
    procs: int,
    seconds: float,
    calls: int,
    folder: Path,
    profile: str | None = None,
    cprofile: bool = False,
    with_raw: bool = True,
    separate: bool = False,
) -> dict[str, Any]:
    from bench.floor import make_two_commits
    from guard.ledger import upgrade

    db = folder / f"workers-{procs}.db"
    upgrade(f"sqlite:///{db}")
    _, close, _ = make_two_commits(str(db))  # creates the floor's table in the same file
    close()
    probe = [f"--profile={profile}-{procs}", *(["--cprofile"] if cprofile else [])] if profile else []
    for n in range(procs if separate else 0):
        upgrade(f"sqlite:///{_file(db, n)}")
    guarded = _spawn("guarded", db, procs, seconds, calls, probe, separate)
    raw = _spawn("raw", db, procs, seconds, calls, []) if with_raw else []
    lat = [x for r in guarded for x in r["lat"]]
    errors: Counter[str] = Counter()
    for r in guarded + raw:
        errors.update(r["errors"])
    return {
        "procs": procs,
        "calls_s": len(lat) / seconds,
        "raw_s": sum(len(r["lat"]) for r in raw) / seconds,
        "p50": _pct(lat, 0.5),
        "p99": _pct(lat, 0.99),
        "max": max(lat, default=float("nan")),
        "raw_p99": _pct([x for r in raw for x in r["lat"]], 0.99),
        "cpu_ms": 1000 * sum(r["cpu"] for r in guarded) / max(1, len(lat)),
        "errors": dict(errors),
        "probe": _probed(guarded, len(lat)) if probe else "",
    }


def _probed(guarded: list[dict[str, Any]], calls: int) -> str:
    """Per guarded call: CPU ms of each kind of thread, and SQLite page-cache misses and hits."""
    threads: Counter[str] = Counter()
    hits = misses = waits = 0
    perf: Counter[str] = Counter()
    for r in guarded:
        perf.update(r["probe"]["perf"])
        waits += r["probe"]["queue_waits"]
        threads.update(r["probe"]["threads"])
        hits += r["probe"]["cache_hits"]
        misses += r["probe"]["cache_misses"]
    per = max(1, calls)
    cpu = " ".join(f"{name}={1000 * sec / per:.3f}" for name, sec in threads.most_common())
    counted = "".join(f"; {k}/call {v / per:,.0f}" for k, v in perf.items())
    return (
        f"      cpu ms/call by thread: {cpu}; pages/call: {misses / per:.1f} read, {hits / per:.1f} from cache; "
        f"waits in the queue/call: {waits / per:.2f}{counted}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--calls", type=int, default=5, help="guarded calls per run")
    parser.add_argument(
        "--separate", action="store_true", help="each guarded worker on a ledger file of its own (the machine's share)"
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw two-commit floor")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="sweep every N this many times in turn; then the medians, and each round's ratios of most to fewest",
    )
    parser.add_argument("--worker-kind", choices=["guarded", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="probe the guarded workers: CPU by thread, SQLite page reads (workers_probe)",
    )
    parser.add_argument("--cprofile", action="store_true", help="with --profile: cProfile each worker to PREFIX-*.prof")
    args = parser.parse_args(argv)
    if args.worker_kind is not None:
        out = (
            _guarded(args.db, args.seconds, args.calls, args.worker, args.profile, args.cprofile)
            if args.worker_kind == "guarded"
            else _raw(args.db, args.seconds, args.worker)
        )
        sys.stdout.write(json.dumps(out))
        return 0
    print(f"bench.workers: {os.cpu_count()} CPUs, {args.seconds:g} s per row, {args.calls} calls per run")
    print(
        f"{'procs':>5} {'guarded/s':>10} {'raw/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'raw p99':>8} {'cpu ms/call':>11}  errors"
    )
    sweep = [int(p) for p in args.procs.split(",")]
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        if args.rounds > 1:
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
            for procs in sweep:
                r = measure(
                    procs,
                    args.seconds,
                    args.calls,
                    Path(folder),
                    args.profile,
                    args.cprofile,
                    not args.no_raw,
                    args.separate,
                )
                rows.append(r)
                print(
                    f"{procs:>5} {r['calls_s']:>10.0f} {r['raw_s']:>8.0f} {1000 * r['p50']:>7.2f} "
                    f"{1000 * r['p99']:>7.1f} {1000 * r['max']:>7.1f} {1000 * r['raw_p99']:>8.1f} "
                    f"{r['cpu_ms']:>11.2f}  {r['errors'] or 'none'}",
                    flush=True,
                )
                if r["probe"]:
                    print(r["probe"], flush=True)
    if args.rounds > 1:
        _summary(rows, sweep)
    return 0


def _summary(rows: list[dict[str, Any]], sweep: list[int]) -> None:
    """Per N the medians over the rounds; then, round by round, the most processes against the fewest."""
    print("medians over the rounds:")
    for procs in sweep:
        mine = [r for r in rows if r["procs"] == procs]
        calls_s, raw_s, p50, p99 = (statistics.median(r[k] for r in mine) for k in ("calls_s", "raw_s", "p50", "p99"))
        print(
            f"{procs:>5} {calls_s:>10.0f} {raw_s:>8.0f} {1000 * p50:>7.2f} {1000 * p99:>7.1f} "
            f"{1000 * max(r['max'] for r in mine):>7.1f} (max of all)"
        )
    few, most = min(sweep), max(sweep)
    if few == most:
        return
    pairs = list(zip([r for r in rows if r["procs"] == few], [r for r in rows if r["procs"] == most], strict=True))
    rates = [b["calls_s"] / a["calls_s"] for a, b in pairs]
    tails = [b["p99"] / a["p99"] for a, b in pairs]
    print(
        f"calls/s {most} against {few}, each round: {' / '.join(f'{x:.2f}' for x in rates)} -> median "
        f"{statistics.median(rates):.2f}; p99 {most} against {few}: {' / '.join(f'{x:.1f}' for x in tails)} -> median "
        f"{statistics.median(tails):.1f}x"
    )


if __name__ == "__main__":
    raise SystemExit(main())
