# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench.pg_cpu` — where the CPU of a guarded call goes with N worker processes on one PostgreSQL.

Starts a throwaway cluster (pg_stat_statements loaded, planning tracked), runs BENCH_PG_WORKERS (default 16)
guarded workers as `bench.postgres` does (each its own run, BENCH_N calls each), then the raw floor, and prints
per call:

- the workers' CPU (process time) and, with BENCH_PG_CPROFILE=PREFIX, a CPU-time cProfile of each worker
  (`PREFIX-<k>.prof`, read with `python -m pstats`) whose top entries are printed;
- the server's CPU split by process kind (client backends, WAL writer, checkpointer, ...), from /proc;
- statement by statement, from pg_stat_statements: calls per guarded call, planning and execution time per
  guarded call (µs; on a CPU-bound server that time is mostly CPU, a COMMIT's is its WAL flush).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pstats
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.postgres import WaitSampler, _worker, floor_call, start_with_statements  # noqa: E402
from tests.pg_cluster import PgCluster, server_bin_dir  # noqa: E402


def _server_cpu(cluster: Any, skip: int) -> dict[str, float]:
    """CPU seconds of each kind of the server's processes (`postgres: walwriter`, a client backend, ...)."""
    postmaster = int((Path(cluster.data) / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == skip:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if postmaster not in (int(fields[1]), int(entry.name)):
            continue
        kind = "postmaster" if int(entry.name) == postmaster else cmd.split(":", 1)[-1].strip()
        if "@" in kind or "127.0.0.1" in kind:
            kind = "client backends"
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _run(kind: str, url: str, workers: int, n: int, cluster: Any) -> dict[str, Any]:
    import psycopg

    from guard.ledger.backend_postgres import conninfo

    if kind == "raw":
        floor_call(url, 0)[1]()
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    ctx = mp.get_context("spawn")
    start, finish, out = ctx.Barrier(workers), ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, url, n, i, start, finish, out)) for i in range(workers)]
    for p in procs:
        p.start()
    with WaitSampler(url) as waits:
        cpu0 = _server_cpu(cluster, waits.pid)
        results = [out.get(timeout=600) for _ in procs]
    cpu1 = _server_cpu(cluster, waits.pid)
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        stmts = conn.execute(
            "SELECT s.query, s.calls, s.total_plan_time, s.total_exec_time FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
            "ORDER BY s.total_plan_time + s.total_exec_time DESC"
        ).fetchall()
    finish.wait()
    for p in procs:
        p.join(60)
    calls = workers * n
    wall = max(r[0] for r in results)
    return {
        "per_s": calls / wall,
        "worker_us": 1e6 * sum(r[3] for r in results) / calls,
        "server_us": {k: 1e6 * (v - cpu0.get(k, 0.0)) / calls for k, v in cpu1.items()},
        "stmts": [(q, c / calls, 1000 * p / calls, 1000 * e / calls) for q, c, p, e in stmts],
        "waits": waits.summary(),
    }


def _show(kind: str, r: dict[str, Any]) -> None:
    server = sum(r["server_us"].values())
    print(f"\n== {kind}: {r['per_s']:.0f}/s; CPU per call: workers {r['worker_us']:.0f} µs, server {server:.0f} µs")
    for k, v in sorted(r["server_us"].items(), key=lambda kv: -kv[1]):
        if v >= 1:
            print(f"   server {k:<40} {v:>6.0f} µs")
    print(f"   waits: {r['waits']}")
    print(f"   {'per call':>8} {'plan µs':>8} {'exec µs':>8}  statement")
    for q, c, p, e in r["stmts"]:
        if c >= 0.01:
            print(f"   {c:>8.2f} {p:>8.1f} {e:>8.1f}  {' '.join(q.split())[:150]}")


def main() -> int:
    n = int(os.environ.get("BENCH_N", "1000"))
    workers = int(os.environ.get("BENCH_PG_WORKERS", "16"))
    prof = os.environ.get("BENCH_PG_CPROFILE")
    bin_dir = server_bin_dir()
    if bin_dir is None:
        print("bench.pg_cpu: no PostgreSQL server binaries; run .ci/ensure-postgres first", file=sys.stderr)
        return 1
    from guard.ledger import upgrade

    cluster = start_with_statements(PgCluster(bin_dir))
    try:
        cluster.sql("ALTER SYSTEM SET pg_stat_statements.track_planning = on")  # known once the library is loaded
        cluster.sql("SELECT pg_reload_conf()")
        cluster.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        upgrade(cluster.create_database("bench_template"))
        for kind in ("guarded", "raw"):
            url = cluster.create_database(f"cpu_{kind}", template="bench_template" if kind == "guarded" else None)
            cluster.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", f"cpu_{kind}")
            _show(kind, _run(kind, url, workers, n, cluster))
        if prof:
            files = sorted(str(p) for p in Path(prof).parent.glob(f"{Path(prof).name}-*.prof"))
            if files:
                stats = pstats.Stats(*files)
                stats.sort_stats("tottime").print_stats(35)
                stats.sort_stats("cumulative").print_stats(45)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
