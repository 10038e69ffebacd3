# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench.verify_postgres` — `guard ledger verify` on a PostgreSQL ledger of N calls: time and memory.

Builds the ledger in bulk, not call by call: `bench.seed` writes N completed calls (with their runs, chained
events, stream heads and row claims, exactly as Guard's own writes shape them) into a SQLite ledger, and those
rows are copied with `COPY` into a PostgreSQL ledger migrated by Guard (a throwaway cluster, as in the tests).
Then `guard ledger verify --json` runs as a child process while its resident memory (VmRSS) is sampled every
0.2 s: printed are the wall time, the child's CPU time, its peak RSS, and the RSS at each tenth of the run, so
one can see whether the memory stays flat while it streams. The verify must report the ledger intact.

Options: `--calls N` (default 1,000,000), `--keep-sqlite PATH` (reuse or keep the seeded SQLite file).
Runs in any venv with Guard and psycopg: `.venv/bin/python -m bench.verify_postgres`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("runs", "calls", "events", "stream_heads")


def _seed_sqlite(path: Path, calls: int) -> None:
    from bench.floor import connect
    from bench.seed import count_calls, seed_calls
    from guard.ledger.database import ensure_ready

    ensure_ready(f"sqlite:///{path}")
    conn = connect(str(path))
    have = count_calls(conn) or 0
    if have < calls:
        t = time.perf_counter()
        seed_calls(conn, calls - have, start=have, for_postgres=True)
        print(f"seeded {calls - have:,} calls into {path} in {time.perf_counter() - t:.0f} s", flush=True)
    conn.close()


def _copy(sqlite_path: Path, url: str) -> None:
    """Every seeded row of TABLES into the PostgreSQL ledger, by COPY, then the events' id sequence moved on."""
    import psycopg

    src = sqlite3.connect(sqlite_path)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=False) as pg:
        for table in TABLES:
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            t = time.perf_counter()
            n = 0
            with pg.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                    copy.write_row(row)
                    n += 1
            print(f"copied {n:,} rows of {table} in {time.perf_counter() - t:.0f} s", flush=True)
        pg.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT max(id) FROM events))")
        pg.commit()
        pg.execute("ANALYZE")
        pg.commit()
    src.close()


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _verify(url: str, folder: Path) -> dict[str, object]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Output to files, not pipes: the JSON report is larger than a pipe holds, and nothing reads it meanwhile.
    with (folder / "verify.out").open("w+b") as out_file, (folder / "verify.err").open("w+b") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guard", "ledger", "verify", "--db", url, "--json"],
            cwd=ROOT,
            stdout=out_file,
            stderr=err_file,
        )
        samples: list[tuple[float, int]] = []
        while proc.poll() is None:
            rss = _rss_kib(proc.pid)
            if rss is not None:
                samples.append((time.perf_counter() - t0, rss))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(out) if out.strip().startswith(b"{") else {"raw": out.decode()[-2000:]}
    return {
        "exit": proc.returncode,
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        # The largest RSS sampled (ru_maxrss of RUSAGE_CHILDREN would be the largest of every child so far).
        "peak_rss_mib": max((rss for _, rss in samples), default=0) / 1024,
        "samples": samples,
        "report": report,
        "stderr": err.decode()[-2000:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify_postgres")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--keep-sqlite", default=None, help="the seeded SQLite file (reused when it holds enough)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from guard.ledger import upgrade
    from tests.pg_cluster import PgCluster, server_bin_dir

    bin_dir = server_bin_dir()
    if bin_dir is None:
        print("no PostgreSQL server binaries (run .ci/ensure-postgres)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-verify-pg-") as folder:
        sqlite_path = Path(args.keep_sqlite) if args.keep_sqlite else Path(folder) / "seed.db"
        _seed_sqlite(sqlite_path.resolve(), args.calls)
        cluster = PgCluster(bin_dir).start()
        try:
            url = cluster.create_database("verify")
            upgrade(url)
            t = time.perf_counter()
            _copy(sqlite_path, url)
            print(f"PostgreSQL ledger of {args.calls:,} calls built in {time.perf_counter() - t:.0f} s", flush=True)
            r = _verify(url, Path(folder))
        finally:
            cluster.remove()
    samples = r["samples"]
    assert isinstance(samples, list)
    print(f"load average {' '.join(os.getloadavg().__repr__().strip('()').split(', '))}")
    print(
        f"guard ledger verify: exit {r['exit']}, wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, "
        f"peak RSS {r['peak_rss_mib']:.0f} MiB"
    )
    if samples:
        tenth = max(1, len(samples) // 10)
        shown = ", ".join(f"{at:.0f}s:{rss / 1024:.0f}" for at, rss in samples[::tenth])
        print(f"RSS (MiB) over the run: {shown}")
    report = r["report"]
    print("report:", json.dumps(report)[:400])
    if r["exit"] != 0:
        print(r["stderr"], file=sys.stderr)
    return 0 if r["exit"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
