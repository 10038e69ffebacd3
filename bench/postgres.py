# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench.postgres` — Guard's ledger on PostgreSQL against PostgreSQL's own two-commit floor.

Starts a throwaway cluster of its own (tests/pg_cluster.py; as the `postgres` user when run as root) and prints:

- per call, one process: the floor (two durable one-row commits through psycopg, as Guard's backend makes them)
  and a guarded auto-approved no-op on a PostgreSQL ledger (`durability` by class and always), p50/p99 and CPU;
- throughput with N worker processes (each its own run): guarded calls/s against the raw two-commit lifecycles/s
  of N clients on the same server, for N in BENCH_PG_WORKERS (default 1,2,4,8,16);
- statements and round trips per call: the server's count (pg_stat_statements, loaded into this cluster; a
  simple-protocol text such as `BEGIN; SELECT pg_advisory_xact_lock(..)` counts each statement in it) and the
  client's (each psycopg execute, and each send of guard.ledger.pg_wire: a pipeline is one), for a guarded call
  and the floor;
- where the time goes, per row of the throughput table: the load average of the machine (1 minute) when the row
  ended, the CPU the worker processes and the server's processes spent per call (µs, from /proc), the WAL fsyncs
  per call (pg_stat_wal: a commit that waits for the disk shares an fsync with those committed beside it), and
  pg_stat_activity sampled every 5 ms while they run, as the share of samples of an active backend on CPU (no
  wait event), waiting for the WAL flush (IO:WALSync and LWLock:WALWrite: the commits' fsync), on a lock
  (Lock:*, e.g. a run's or a head row's), or elsewhere.

Options / environment: BENCH_N (calls per row and per worker, default 1,000), BENCH_PG_WORKERS.
The last line is the `bench-postgres: ...` summary.
"""

from __future__ import annotations

import cProfile
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


def count_sql(
    cluster: Any, database: str, make: Callable[[str], tuple[Callable[[], Any], Callable[[], None]]], n: int
) -> tuple[float, float]:
    """(statements, round trips) per call. Statements from the server's own log of what it was sent (`log_statement =
    all` on a database of its own): a simple-protocol text (`BEGIN ...; SELECT pg_advisory_xact_lock(..)`) is one
    line holding each of its statements, an extended-protocol execute one line and one statement (also when several
    ride in one round trip, libpq's pipeline mode). Round trips counted by the client as it waits for the server:
    each psycopg execute or transaction command, and each of `guard.ledger.pg_wire.Wire`'s sends (a pipeline is
    one)."""
    cluster.sql(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
    call, close = make(cluster.url(database))
    trips = _TripCounter()
    try:
        call()  # warm: the connections are open, the run and its head known
        log = Path(cluster.log)
        start = log.stat().st_size
        with trips:
            for _ in range(n):
                call()
        with log.open("rb") as f:
            f.seek(start)
            lines = [
                line.decode(errors="replace").split("LOG:  ", 1)[1]
                for line in f
                if b"LOG:  statement: " in line or b"LOG:  execute " in line
            ]
    finally:
        close()
        cluster.sql(f'ALTER DATABASE "{database}" RESET log_statement')
    sent = [line.split(": ", 1)[1] for line in lines]
    return sum(len([q for q in text.split(";") if q.strip()]) for text in sent) / n, trips.count / n


class _TripCounter:
    """Counts, while entered, the round trips this process makes: psycopg's executes and `Wire`'s sends."""

    def __init__(self) -> None:
        import psycopg

        self.count = 0
        self._patched: list[tuple[Any, str, Any]] = [
            (psycopg.Cursor, "execute", psycopg.Cursor.execute),
            (psycopg.Cursor, "executemany", psycopg.Cursor.executemany),
            # BEGIN and COMMIT of `with conn.transaction()` (the floor), sent without a cursor
            (psycopg.Connection, "_exec_command", psycopg.Connection._exec_command),
        ]
        try:
            from guard.ledger.pg_wire import Wire
        except ImportError:  # an older Guard (A/B): psycopg alone
            return
        self._patched += [(Wire, name, getattr(Wire, name)) for name in ("run", "plain", "first")]

    def __enter__(self) -> _TripCounter:
        for owner, name, orig in self._patched:
            setattr(owner, name, self._counted(orig))
        return self

    def _counted(self, orig: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return orig(*args, **kwargs)

        return counted

    def __exit__(self, *exc: object) -> None:
        for owner, name, orig in self._patched:
            setattr(owner, name, orig)


class ServerUsage:
    """CPU seconds of the server's processes (the postmaster's children: backends, WAL writer, ...) and its WAL
    fsyncs, read before and after a measurement."""

    def __init__(self, cluster: Any, url: str, skip: int) -> None:
        self.postmaster = int((Path(cluster.data) / "postmaster.pid").read_text().split()[0])
        self.url = url
        self.skip = skip  # the sampler's backend (its polling is not the workers' load)
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu(self) -> float:
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry.name) != self.skip and self.postmaster in (int(fields[1]), int(entry.name)):
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / self.tick

    def wal_syncs(self) -> int:
        import psycopg

        from guard.ledger.backend_postgres import conninfo

        with psycopg.connect(conninfo(self.url), autocommit=True) as conn:
            row = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
        return 0 if row is None else int(row[0])

    def read(self) -> tuple[float, int]:
        return self.cpu(), self.wal_syncs()


def _worker(kind: str, url: str, n: int, index: int, start: Any, finish: Any, out: Any) -> None:
    try:
        call, closer = floor_call(url, 10_000_000 * (index + 1)) if kind == "raw" else guarded_call(url)
    except BaseException:
        start.abort()  # the others must not wait at the barrier for a worker that never comes
        raise
    try:
        call()
        start.wait()
        prefix = os.environ.get("BENCH_PG_CPROFILE") if kind == "guarded" else None
        profile = cProfile.Profile(time.thread_time) if prefix else None  # CPU, not waits (bench.pg_cpu)
        if profile is not None:
            profile.enable()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        lat: list[float] = []
        errors = 0
        for _ in range(n):
            c0 = time.perf_counter()
            try:
                call()
            except Exception:
                errors += 1
            lat.append(time.perf_counter() - c0)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if profile is not None:
            profile.disable()
            profile.dump_stats(f"{prefix}-{index}.prof")
        out.put((elapsed, lat, errors, cpu))
        finish.wait()  # the server's CPU is read while every connection is still open (a closed one's is gone)
    finally:
        closer()


class WaitSampler:
    """Samples what the active backends of one database wait for, from another connection, until stopped."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.pid = 0  # its backend's process id, once connected
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        from guard.ledger.backend_postgres import conninfo

        conn = psycopg.connect(conninfo(self.url), autocommit=True)
        self.pid = conn.info.backend_pid
        self._ready.set()
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


def throughput(kind: str, url: str, workers: int, n: int, cluster: Any) -> dict[str, Any]:
    if kind == "raw":
        floor_call(url, 0)[1]()  # the table, made once before the workers start (a concurrent CREATE races)
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(workers)
    finish = ctx.Barrier(workers + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, url, n, i, start, finish, out)) for i in range(workers)]
    for p in procs:
        p.start()
    with WaitSampler(url) as waits:
        usage = ServerUsage(cluster, url, skip=waits.pid)
        cpu0, wal0 = usage.read()
        results = [out.get(timeout=600) for _ in procs]
    time.sleep(1.2)  # backends report their WAL counts within a second of going idle (still connected: their CPU stays)
    cpu1, wal1 = usage.read()
    load = os.getloadavg()[0]
    finish.wait()
    for p in procs:
        p.join(60)
    wall = max(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    calls = workers * n
    return {
        "per_s": calls / wall,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "max_ms": lat[-1] * 1000,
        "errors": sum(r[2] for r in results),
        "waits": waits.summary(),
        "load": load,
        "worker_us": 1e6 * sum(r[3] for r in results) / calls,
        "server_us": 1e6 * (cpu1 - cpu0) / calls,
        "fsyncs": (wal1 - wal0) / calls,
    }


def start_with_statements(cluster: Any) -> Any:
    """Start a throwaway cluster with pg_stat_statements loaded (to count and time the statements a call makes);
    a server without the library starts without it, and only those figures are skipped."""
    cluster.start()
    cluster.sql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    cluster.stop("fast")
    try:
        cluster.start()
    except RuntimeError:
        cluster.sql("ALTER SYSTEM RESET shared_preload_libraries")
        cluster.start()
    return cluster


def main() -> int:
    n = int(os.environ.get("BENCH_N", "1000"))
    counts = [int(x) for x in os.environ.get("BENCH_PG_WORKERS", "1,2,4,8,16").split(",")]
    bin_dir = server_bin_dir()
    if bin_dir is None:
        print("bench-postgres: no PostgreSQL server binaries; run .ci/ensure-postgres first", file=sys.stderr)
        return 1
    from guard.ledger import upgrade

    cluster = start_with_statements(PgCluster(bin_dir))
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
        counted = min(n, 200)
        cluster.create_database("counted_guarded", template="bench_template")
        cluster.create_database("counted_floor")
        floor_call(cluster.url("counted_floor"), 0)[1]()  # its table
        g_stmts, g_trips = count_sql(cluster, "counted_guarded", guarded_call, counted)
        f_stmts, f_trips = count_sql(cluster, "counted_floor", lambda u: floor_call(u, 10**9), counted)
        print(
            f"per call, as the server logged them: guarded {g_stmts:.1f} statements in {g_trips:.1f} round trips; "
            f"floor {f_stmts:.1f} in {f_trips:.1f}"
        )
        print(
            f"\n{'workers':>7} {'guarded/s':>10} {'raw/s':>8} {'g/raw':>6} {'p99 ms':>7} {'max ms':>7} {'errors':>6}"
            f" {'load g/r':>9} {'wrk µs g/r':>10} {'srv µs g/r':>10} {'fsync/call g/r':>14}"
            "  server, guarded (backends active per sample; top wait events) | raw"
        )
        tput: dict[int, float] = {}
        for w in counts:
            g = throughput(
                "guarded", cluster.create_database(f"tput_{w}", template="bench_template"), w, n // 2, cluster
            )
            raw = throughput("raw", cluster.create_database(f"raw_{w}"), w, n // 2, cluster)
            tput[w] = g["per_s"] / raw["per_s"]
            print(
                f"{w:>7} {g['per_s']:>10.0f} {raw['per_s']:>8.0f} {tput[w]:>6.2f} {g['p99_ms']:>7.1f} "
                f"{g['max_ms']:>7.1f} {g['errors'] + raw['errors']:>6.0f} {g['load']:>4.1f}/{raw['load']:<4.1f} "
                f"{g['worker_us']:>4.0f}/{raw['worker_us']:<5.0f} {g['server_us']:>4.0f}/{raw['server_us']:<5.0f} "
                f"{g['fsyncs']:>6.2f}/{raw['fsyncs']:<7.2f}  {g['waits']} | {raw['waits']}"
            )
        top = max(counts)
        print(f"bench-postgres: guarded/floor {ratio:.2f}, guarded/raw at {top} workers {tput[top]:.2f}")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
