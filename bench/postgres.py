# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench.postgres` — Guard's ledger on PostgreSQL against PostgreSQL's own two-commit floor.

Starts a throwaway cluster of its own (tests/pg_cluster.py; as the `postgres` user when run as root) and prints:

- per call, one process: the floor (two durable one-row commits through psycopg, as Guard's backend makes them)
  and a guarded auto-approved no-op on a PostgreSQL ledger (`durability` by class and always), p50/p99 and CPU;
- throughput with N worker processes (each its own run): guarded calls/s against the raw two-commit lifecycles/s
  of N clients on the same server, for N in BENCH_PG_WORKERS (default 1,2,4,8,16);
- where the guarded workers' time goes on the server: pg_stat_activity sampled every 5 ms while they run, as the
  share of samples of an active backend on CPU (no wait event), waiting for the WAL flush (IO:WALSync and
  LWLock:WALWrite: the commits' fsync), on a lock (Lock:*, e.g. a run's or a head row's), or elsewhere.

Options / environment: BENCH_N (calls per row and per worker, default 1,000), BENCH_PG_WORKERS.
The last line is the `bench-postgres: ...` summary.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.guard_cases import POLICY_DIR  # noqa: E402
from tests.pg_cluster import PgCluster, server_bin_dir  # noqa: E402

FLOOR_TABLE = (
    "CREATE TABLE IF NOT EXISTS floor_calls (id bigint PRIMARY KEY, state text NOT NULL, "
    "args_json text NOT NULL, result_json text, at double precision)"
)


def floor_call(url: str, base: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(call, closer): each call inserts a row and commits, then updates it and commits (both durable)."""
    import psycopg

    from guard.ledger.backend_postgres import conninfo

    conn = psycopg.connect(conninfo(url), autocommit=True)
    conn.execute(FLOOR_TABLE)
    counter = itertools.count(base)

    def call() -> None:
        i = next(counter)
        with conn.transaction():
            conn.execute("INSERT INTO floor_calls (id, state, args_json, at) VALUES (%s, 'running', '{}', 0)", (i,))
        with conn.transaction():
            conn.execute("UPDATE floor_calls SET state = 'succeeded', result_json = 'null' WHERE id = %s", (i,))

    return call, conn.close


def guarded_call(url: str, durability: str = "by_class") -> tuple[Callable[[], Any], Callable[[], None]]:
    """(call, closer): one auto-approved guarded no-op per call, inside one open run (bench/policies)."""
    from guard import Guard

    g = Guard(policies=str(POLICY_DIR), db=url, log_level="warning", durability=durability)  # type: ignore[arg-type]
    noop = g.tool(lambda i: None, name="bench.noop")
    run = g.run(team="bench")
    run.__enter__()
    counter = itertools.count()

    def call() -> Any:
        return noop(i=next(counter))

    def closer() -> None:
        try:
            run.__exit__(None, None, None)
        finally:
            g.close()

    return call, closer


def timed(call: Callable[[], Any], n: int) -> dict[str, float]:
    call()  # warm: connections, prepared statements
    lat: list[float] = []
    cpu0 = time.process_time_ns()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        lat.append((time.perf_counter_ns() - t0) / 1000)
    cpu = (time.process_time_ns() - cpu0) / 1000 / n
    lat.sort()
    return {"p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1], "cpu": cpu}


def _worker(kind: str, url: str, n: int, index: int, start: Any, out: Any) -> None:
    try:
        call, closer = floor_call(url, 10_000_000 * (index + 1)) if kind == "raw" else guarded_call(url)
    except BaseException:
        start.abort()  # the others must not wait at the barrier for a worker that never comes
        raise
    try:
        call()
        start.wait()
        t0 = time.perf_counter()
        lat: list[float] = []
        errors = 0
        for _ in range(n):
            c0 = time.perf_counter()
            try:
                call()
            except Exception:
                errors += 1
            lat.append(time.perf_counter() - c0)
        out.put((time.perf_counter() - t0, lat, errors))
    finally:
        closer()


class WaitSampler:
    """Samples what the active backends of one database wait for, from another connection, until stopped."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        from guard.ledger.backend_postgres import conninfo

        conn = psycopg.connect(conninfo(self.url), autocommit=True)
        try:
            while not self._stop.wait(0.005):
                rows = conn.execute(
                    "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '') FROM pg_stat_activity "
                    "WHERE datname = current_database() AND state = 'active' AND pid != pg_backend_pid()"
                ).fetchall()
                self.samples += 1
                for kind, event in rows:
                    key = f"{kind}:{event}" if event else kind
                    self.counts[key] = self.counts.get(key, 0) + 1
        finally:
            conn.close()

    def summary(self) -> str:
        """The top wait events by share of all samples of active backends, e.g. `IO:WALSync 41%, CPU 30%`."""
        total = sum(self.counts.values()) or 1
        top = sorted(self.counts.items(), key=lambda kv: -kv[1])[:4]
        busy = total / max(self.samples, 1)
        return f"{busy:.1f} active; " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in top)


def throughput(kind: str, url: str, workers: int, n: int) -> dict[str, Any]:
    if kind == "raw":
        floor_call(url, 0)[1]()  # the table, made once before the workers start (a concurrent CREATE races)
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, url, n, i, start, out)) for i in range(workers)]
    for p in procs:
        p.start()
    with WaitSampler(url) as waits:
        results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    wall = max(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    return {
        "per_s": workers * n / wall,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "max_ms": lat[-1] * 1000,
        "errors": sum(r[2] for r in results),
        "waits": waits.summary(),
    }


def main() -> int:
    n = int(os.environ.get("BENCH_N", "1000"))
    counts = [int(x) for x in os.environ.get("BENCH_PG_WORKERS", "1,2,4,8,16").split(",")]
    bin_dir = server_bin_dir()
    if bin_dir is None:
        print("bench-postgres: no PostgreSQL server binaries; run .ci/ensure-postgres first", file=sys.stderr)
        return 1
    from guard.ledger import upgrade

    cluster = PgCluster(bin_dir).start()
    try:
        print(f"PostgreSQL cluster {cluster.url()} (fsync on, synchronous_commit on); {n} calls per row")
        upgrade(cluster.create_database("bench_template"))
        rows: dict[str, dict[str, float]] = {}
        floor, close = floor_call(cluster.create_database("floor"), 0)
        rows["floor: two durable commits"] = timed(floor, n)
        close()
        for durability in ("by_class", "always"):
            url = cluster.create_database(f"guard_{durability}", template="bench_template")
            call, close = guarded_call(url, durability)
            rows[f"guarded no-op, durability={durability}"] = timed(call, n)
            close()
        print(f"{'row':<44} {'p50 µs':>9} {'p99 µs':>9} {'CPU µs':>8}")
        for name, r in rows.items():
            print(f"{name:<44} {r['p50']:>9.0f} {r['p99']:>9.0f} {r['cpu']:>8.0f}")
        ratio = rows["guarded no-op, durability=by_class"]["p50"] / rows["floor: two durable commits"]["p50"]
        print(
            f"\n{'workers':>7} {'guarded/s':>10} {'raw/s':>8} {'g/raw':>6} {'p99 ms':>7} {'max ms':>7} {'errors':>6}"
            "  server, guarded (backends active per sample; top wait events) | raw"
        )
        tput: dict[int, float] = {}
        for w in counts:
            g = throughput("guarded", cluster.create_database(f"tput_{w}", template="bench_template"), w, n // 2)
            raw = throughput("raw", cluster.create_database(f"raw_{w}"), w, n // 2)
            tput[w] = g["per_s"] / raw["per_s"]
            print(
                f"{w:>7} {g['per_s']:>10.0f} {raw['per_s']:>8.0f} {tput[w]:>6.2f} {g['p99_ms']:>7.1f} "
                f"{g['max_ms']:>7.1f} {g['errors'] + raw['errors']:>6.0f}  {g['waits']} | {raw['waits']}"
            )
        top = max(counts)
        print(f"bench-postgres: guarded/floor {ratio:.2f}, guarded/raw at {top} workers {tput[top]:.2f}")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
