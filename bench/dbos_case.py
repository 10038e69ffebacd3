# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""DBOS Transact's cost per durable step on a SQLite system database (the closest durable peer).

One workflow of N no-op steps; each step's latency is timed inside the workflow around the step call
(DBOS checkpoints every step's output to the system database before returning). A short workflow runs
first as warm-up. CPU per step is process_time over the timed steps / N (DBOS's background threads
included).

Settings: DBOS opens SQLite with isolation_level IMMEDIATE, busy_timeout=30000, foreign_keys=ON and the
default rollback journal. To compare it with Guard we hand DBOS its system database engine
(`system_database_engine`, a documented DBOSConfig key) whose connect event applies DBOS's own settings
and then Guard's: journal_mode=WAL, synchronous=FULL, busy_timeout=5000. The settings are read back from
a connection of DBOS's engine after launch and reported.

Run in a subprocess of the bench venv (DBOS is a process-wide singleton with background threads and
logging handlers that would otherwise keep running during the Guard rows):
    python -m bench.dbos_case DB_PATH N [WARMUP] [--dbos-defaults]  -> one JSON row on stdout
--dbos-defaults lets DBOS open the file itself (its own settings), for reference.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def version() -> str:
    from importlib.metadata import version as v

    return v("dbos")


def _engine(db_path: str) -> Any:
    import sqlalchemy as sa
    import sqlalchemy.event

    engine = sa.create_engine(f"sqlite:///{db_path}")

    @sqlalchemy.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"  # as DBOS's own SQLite engine does
        dbapi_conn.execute("PRAGMA foreign_keys=ON")  # as DBOS's own SQLite engine does
        dbapi_conn.execute("PRAGMA journal_mode=WAL")  # Guard's settings from here on
        dbapi_conn.execute("PRAGMA synchronous=FULL")
        dbapi_conn.execute("PRAGMA busy_timeout=5000")

    return engine


def run(db_path: str, n: int, warmup: int, dbos_defaults: bool = False) -> dict:
    import sqlalchemy as sa
    from dbos import DBOS  # pyright: ignore[reportMissingImports]  # peer: only in .venv-bench

    from bench.stats import summarize

    config: dict[str, Any] = {
        "name": "guard-bench",
        "system_database_url": f"sqlite:///{db_path}",
        "log_level": "WARNING",
    }
    if not dbos_defaults:
        config["system_database_engine"] = _engine(db_path)
    dbos = DBOS(config=config)  # type: ignore[arg-type]

    @DBOS.step()
    def noop_step() -> None:
        return None

    samples: list[int] = []
    cpu_box: list[int] = []

    @DBOS.workflow()
    def steps_workflow(k: int, record: bool) -> int:
        pc = time.perf_counter_ns
        out = [0] * k
        cpu0 = time.process_time_ns()
        for i in range(k):
            t0 = pc()
            noop_step()
            out[i] = pc() - t0
        if record:
            cpu_box.append(time.process_time_ns() - cpu0)
            samples.extend(out)
        return k

    DBOS.launch()
    try:
        with dbos._sys_db.engine.connect() as c:  # one of DBOS's own connections
            jm = c.execute(sa.text("PRAGMA journal_mode")).scalar()
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[c.execute(sa.text("PRAGMA synchronous")).scalar()]
            bt = c.execute(sa.text("PRAGMA busy_timeout")).scalar()
        settings = f"journal_mode={jm}, synchronous={sync}, busy_timeout={bt}"
        steps_workflow(warmup, False)
        t0 = time.perf_counter()
        steps_workflow(n, True)
        wall = time.perf_counter() - t0
    finally:
        DBOS.destroy(destroy_registry=True)
    label = "DBOS's own SQLite defaults" if dbos_defaults else "Guard's SQLite settings"
    row = summarize(
        f"DBOS {version()} step, {label}", samples, cpu_box[0], note=f"one workflow of {n:,} no-op steps; {settings}"
    )
    row.extra = {"settings": settings, "workflow_wall_s": wall, "version": version()}
    return row.to_json()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path, n = args[0], int(args[1])
    warm = int(args[2]) if len(args) > 2 else max(10, n // 10)
    print("BENCH_JSON " + json.dumps(run(path, n, warm, dbos_defaults="--dbos-defaults" in sys.argv)))
