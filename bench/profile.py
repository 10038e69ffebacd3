# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench.profile` — where the time of one guarded call goes, the run's open and close included.

Makes `--runs` runs of `--calls` guarded no-op calls each (every run opened by `Guard.run` with a source event
and closed, as a worker of `bench.workers` does) under cProfile, on a fresh SQLite ledger in `--dir` (default a
temporary directory; `/dev/shm` takes the disk out). Prints the wall and CPU time per call, then the time per
call by area (each function's own time, summed by the part of Guard or the library it belongs to), then the
`--top` functions by own time, in microseconds per call. `--timer cpu` (default) profiles CPU time, so a loaded
machine's preemptions and the disk's waits fall on no function; `--timer wall` counts them (the waits show in
SQLite's `execute`). cProfile adds its own cost per Python function call, so the areas' shares matter more than
their sum.

Runs in any venv that has Guard: `.venv/bin/python -m bench.profile`.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "bench" / "policies"

# (area, substring of the file path or of the built-in's name), first match wins
AREAS = (
    ("sqlite: execute (SQL and its disk wait)", "method 'execute' of 'sqlite3"),
    ("sqlite: fetch", "method 'fetch"),
    ("sqlite: other", "sqlite3"),
    ("hashing (sha256, hmac)", "_hashlib"),
    ("hashing (sha256, hmac)", "hmac.py"),
    ("json encode", "json/"),
    ("json encode", "_json"),
    ("ledger: chain, claims, moves", "guard/ledger/moves.py"),
    ("ledger: chain, claims, moves", "guard/ledger/chain.py"),
    ("ledger: chain, claims, moves", "guard/ledger/digests.py"),
    ("ledger: backend, connections, write queue", "guard/ledger/backend.py"),
    ("ledger: backend, connections, write queue", "guard/ledger/write_queue.py"),
    ("ledger: backend, connections, write queue", "fcntl"),
    ("ledger: other", "guard/ledger/"),
    ("canonical JSON, argument hash", "guard/canonical.py"),
    ("canonical JSON, argument hash", "guard/redaction.py"),
    ("policy: classify", "guard/policy/"),
    ("runtime", "guard/runtime/"),
    ("guard: other", "guard/"),
    ("logging (structlog)", "structlog"),
    ("threads, locks, time", "threading.py"),
    ("threads, locks, time", "method 'acquire'"),
    ("threads, locks, time", "time."),
    ("contextvars, typing, dataclasses", "contextvars"),
    ("contextvars, typing, dataclasses", "dataclasses"),
)


def _area(func: tuple[str, int, str]) -> str:
    path, _line, name = func
    where = f"{path}:{name}" if path != "~" else name
    for area, needle in AREAS:
        if needle in where:
            return area
    return "python: other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--calls", type=int, default=5, help="guarded calls per run")
    parser.add_argument("--dir", default=None, help="where the ledger file goes (default: a temporary directory)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--timer", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args(argv)

    from guard import Guard

    with tempfile.TemporaryDirectory(prefix="bench-profile-", dir=args.dir) as folder:
        g = Guard(policies=str(POLICY_DIR), db=f"sqlite:///{folder}/profile.db", log_level="error")
        noop = g.tool(lambda i: None, name="bench.noop")
        for n in range(20):  # warm: imports, prepared statements, the checkpoint thread
            with g.run("bench", source_event_id=f"warm-{n}"):
                noop(i=0)
        prof = cProfile.Profile(time.process_time if args.timer == "cpu" else time.perf_counter)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        prof.enable()
        for n in range(args.runs):
            with g.run("bench", source_event_id=f"run-{n}"):
                for i in range(args.calls):
                    noop(i=i)
        prof.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        g.close()
        # Once more without the profiler: the figures a worker sees.
        g = Guard(policies=str(POLICY_DIR), db=f"sqlite:///{folder}/plain.db", log_level="error")
        noop = g.tool(lambda i: None, name="bench.noop")
        for n in range(20):
            with g.run("bench", source_event_id=f"warm-{n}"):
                noop(i=0)
        pwall0, pcpu0 = time.perf_counter(), time.process_time()
        for n in range(args.runs):
            with g.run("bench", source_event_id=f"run-{n}"):
                for i in range(args.calls):
                    noop(i=i)
        pwall, pcpu = time.perf_counter() - pwall0, time.process_time() - pcpu0
        g.close()

    calls = args.runs * args.calls
    us = 1e6 / calls
    print(f"bench.profile: {args.runs} runs of {args.calls} calls (open and close counted), {calls} calls")
    print(f"without profiler: wall {pwall * us:.0f} µs, CPU {pcpu * us:.0f} µs per call")
    print(f"under cProfile:   wall {wall * us:.0f} µs, CPU {cpu * us:.0f} µs per call")
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]
    areas: Counter[str] = Counter()
    own: list[tuple[float, int, tuple[str, int, str]]] = []
    for func, (_cc, ncalls, tottime, _cum, _callers) in raw.items():
        areas[_area(func)] += tottime
        own.append((tottime, ncalls, func))
    total = sum(areas.values())
    print(f"\nown {args.timer} time per call by area (µs; total {total * us:.0f} under the profiler):")
    for area, t in areas.most_common():
        print(f"  {t * us:>7.1f}  {100 * t / total:>5.1f}%  {area}")
    print(f"\ntop {args.top} functions by own {args.timer} time (µs per call, calls per call):")
    for tottime, ncalls, (path, line, name) in sorted(own, reverse=True)[: args.top]:
        where = name if path == "~" else f"{path.replace(str(ROOT) + '/', '')}:{line}({name})"
        print(f"  {tottime * us:>7.1f}  {ncalls / calls:>5.1f}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
