# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench` — Guard's per-call cost against a bare call, the SQLite floor, DBOS and Edictum.

Runs every row in one process on one disk. The rows that write to disk (the floor, Guard's, the ledger's SQL
alone) are measured in turns of 100 calls each, so that a shared machine's drift falls on all of them alike
and their ratios depend less on the moment each row ran. DBOS alone runs in a subprocess of the same venv,
after them: it is a process-wide singleton with background threads. Peers live in .venv-bench/ (bench/requirements.txt);
run from any Python, this module builds that venv if needed and re-executes itself inside it.

Options / environment:
  --quick            fewer iterations (ledger rows 200, in-memory rows 20,000)
  --keep             keep the work directory (database files) for inspection
  BENCH_N            iterations of ledger-bound rows (default 2,000)
  BENCH_N_MEM        iterations of in-memory rows (default 200,000)
  BENCH_SEEDS        earlier calls for the growth rows, comma-separated (default 100000,1000000)
  BENCH_NO_VENV=1    run in the current interpreter, do not build/enter .venv-bench/
The last line printed is always the `bench: ...` summary.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
VENV = ROOT / ".venv-bench"
STAMP = VENV / "ready"


def ensure_venv() -> None:
    """Build .venv-bench/ (Guard editable + peers) when missing or stale, then re-exec inside it."""
    if os.environ.get("BENCH_NO_VENV") or Path(sys.prefix).resolve() == VENV.resolve():
        return
    req, pyproject = BENCH_DIR / "requirements.txt", ROOT / "pyproject.toml"
    newest = max(req.stat().st_mtime, pyproject.stat().st_mtime)
    if not STAMP.exists() or STAMP.stat().st_mtime < newest:
        print(f"bench: building {VENV.name}/ ...", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(VENV / "bin/python"), "-m", "pip", "install", "-q", "-e", str(ROOT),
                               "-r", str(req)])
        STAMP.touch()
    py = str(VENV / "bin/python")
    os.execv(py, [py, "-m", "bench", *sys.argv[1:]])


def filesystem_of(path: Path) -> str:
    real = str(path.resolve())
    best = ("?", "?", "/")
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                dev, mnt, fstype = line.split()[:3]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[2]):
                    best = (dev, fstype, mnt)
    except OSError:
        pass
    free = shutil.disk_usage(real).free / 2**30
    return f"{best[1]} on {best[0]} (mounted at {best[2]}), {free:,.0f} GiB free"


def short(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__} {msg}"[:160]


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _flush(db: Path) -> None:
    """Put what a row left in the OS's cache (its lazy commits) on disk, so the next row does not pay for it."""
    for path in (db, db.with_name(db.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _count(db: Path) -> int | None:
    """Calls of bench.noop in the ledger file (None if it has no calls table yet)."""
    from bench.seed import count_calls

    if not db.exists():
        return None
    conn = sqlite3.connect(db)
    try:
        return count_calls(conn, tool="bench.noop")
    finally:
        conn.close()


def run_dbos(db_path: Path, n: int, dbos_defaults: bool):
    from bench.stats import Row, unavailable

    name = "DBOS step, " + ("DBOS's own SQLite defaults" if dbos_defaults else "Guard's SQLite settings")
    cmd = [sys.executable, "-m", "bench.dbos_case", str(db_path), str(n)]
    if dbos_defaults:
        cmd.append("--dbos-defaults")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return Row.from_json(json.loads(line[len("BENCH_JSON "):]))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return unavailable(name, f"dbos: failed ({tail[:150]})")


def main(argv: list[str]) -> int:
    ensure_venv()
    from bench import edictum_case, floor, guard_cases, seed
    from bench.stats import Case, markdown_table, measure, measure_interleaved, ratio, summarize, unavailable

    quick = "--quick" in argv
    n_led = int(os.environ.get("BENCH_N") or (200 if quick else 2000))
    n_mem = int(os.environ.get("BENCH_N_MEM") or (20_000 if quick else 200_000))
    seeds = [int(s) for s in os.environ.get("BENCH_SEEDS", "100000,1000000").split(",") if s.strip()]
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=BENCH_DIR))

    print("# Guard benchmark")
    print(f"python {platform.python_version()} ({sys.executable}), sqlite {sqlite3.sqlite_version}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs")
    print(f"database files: {work}  [{filesystem_of(work)}]")
    print(f"iterations: {n_led:,} per ledger-bound row, {n_mem:,} per in-memory row "
          f"(+10% warm-up); GC on", flush=True)

    rows = {}

    def add(key: str, row) -> None:
        rows[key] = row
        val = f"p50 {row.p50_us:,.2f} µs, p99 {row.p99_us:,.2f} µs, cpu {row.cpu_us:,.2f} µs" if row.ok \
            else row.note
        print(f"  {row.name}: {val}", flush=True)

    try:
        # 1. bare call (same shape as the guarded call: one keyword argument)
        def bare_noop(i: int) -> None:
            return None

        counter = itertools.count()
        add("bare", measure("bare Python call (no-op tool)", lambda: bare_noop(i=next(counter)), n_mem))

        # 5. policy classification: Guard vs Edictum
        for amount in (100, 60_000):
            args = {"amount_cents": amount}
            what = "falls through to `invoice`" if amount == 100 else "matches `big-invoice` (approval)"
            try:
                classify = guard_cases.make_classifier()
                add(f"classify{amount}", measure(f"Guard classify, amount_cents={amount}",
                                                 functools.partial(classify, "billing.create_invoice", args),
                                                 n_mem, note=what))
            except Exception as exc:  # Guard core not there yet, or its API moved
                add(f"classify{amount}", unavailable(f"Guard classify, amount_cents={amount}",
                                                     f"guard: not available ({short(exc)})"))
            try:
                evaluate = edictum_case.make_evaluator()
                add(f"edictum{amount}", measure(
                    f"Edictum {edictum_case.version()} evaluate, amount_cents={amount}",
                    functools.partial(evaluate, "billing.create_invoice", args), n_mem,
                    note="YAML pre rule `args.amount_cents gt 50000 -> ask`"))
            except Exception as exc:
                add(f"edictum{amount}", unavailable(f"Edictum evaluate, amount_cents={amount}",
                                                    f"edictum: not available ({short(exc)})"))

        # 2-4. everything that writes to disk, measured in turns on files of its own (see measure_interleaved):
        # the two-commit floor, the guarded no-op (default, every commit durable, info logs), the ledger's SQL
        # alone, and the guarded no-op on ledgers that already hold earlier calls.
        closers: list = []
        cases: dict = {}
        counted: dict = {}  # key -> (ledger file, calls of bench.noop before)
        try:
            call, close, settings = floor.make_two_commits(str(work / "floor.db"))
            closers.append(close)
            # Warmed up past its WAL's first checkpoint (1,000 pages: 500 calls), as a long-lived ledger's WAL is:
            # while a new WAL file still grows, every commit also flushes its size and costs half as much again.
            cases["floor"] = Case("SQLite floor: insert+commit, update+commit", call, note=settings,
                                  warmup=max(600, n_led // 10))
            ledgers = {"guarded": work / "ledger.db", "guarded_always": work / "ledger-always.db",
                       "guarded_info": work / "ledger-info.db"}
            if guard_cases.otel_sdk():  # the traced row needs the OpenTelemetry SDK (bench/requirements.txt)
                ledgers["guarded_traced"] = work / "ledger-traced.db"
            seeded, previous = 0, None
            for target in seeds:  # the growth rows' files, seeded before anything is timed
                path = work / f"ledger-{target}.db"
                t0 = time.perf_counter()
                if previous is None:
                    _, close_new = guard_cases.make_guarded_noop(str(path))  # Guard's migrations make the schema
                    close_new()
                else:
                    shutil.copyfile(previous, path)
                conn = floor.connect(str(path))
                seed.seed_calls(conn, target - seeded, start=seeded)
                total = seed.count_calls(conn)
                conn.close()
                seeded, previous = target, path
                ledgers[f"guarded{target}"] = path
                print(f"  (seeded {path.name} to {target:,} earlier calls in {time.perf_counter() - t0:.1f} s; "
                      f"calls table holds {total:,}; file {path.stat().st_size / 2**20:,.0f} MiB)", flush=True)
            for key, path in ledgers.items():
                durability = "always" if key == "guarded_always" else "by_class"
                log_level = "info" if key == "guarded_info" else "warning"
                target = key.removeprefix("guarded")
                label = ("Guard guarded no-op, " + (f"{int(target):,} earlier calls" if target.isdigit()
                         else "empty ledger") + {"guarded_always": ", every commit durable",
                                                 "guarded_info": ", info logs",
                                                 "guarded_traced": ", traced (OTel SDK, in-memory)"}.get(key, ""))
                note = (f"auto-approved idempotent no-op, one open run, log_level={log_level}, "
                        f"durability={durability}, tracing "
                        + ("on: SDK TracerProvider, in-memory exporter" if key == "guarded_traced"
                           else "off" if not guard_cases.otel_api() else "off: OTel API without an SDK"))
                # At `info` Guard writes a log line per call to stderr: rendered, then sent to /dev/null here.
                around = _stderr_to_devnull if log_level == "info" else None
                with around() if around is not None else contextlib.nullcontext():
                    call, close = guard_cases.make_guarded_noop(str(path), log_level=log_level, durability=durability,
                                                                traced=key == "guarded_traced")
                closers.append(close)
                counted[key] = (path, _count(path))
                cases[key] = Case(label, call, note=note + (" (stderr to /dev/null)" if around else ""), around=around,
                                  settle=functools.partial(_flush, path))
            replay, close_replay, statements = guard_cases.make_sql_replay(str(work), n_led + max(10, n_led // 10))
            closers.append(close_replay)
            cases["sql"] = Case("Guard's ledger SQL alone, replayed without Guard", replay,
                                note=f"the {statements} statements of one guarded no-op as Guard sent them "
                                     "(durability=by_class), on a ledger file of its own",
                                settle=functools.partial(_flush, work / "replay.db"))
            os.sync()  # what seeding left in the OS's cache goes to disk now, not during the measurements
            print(f"  measuring {len(cases)} disk-bound rows in turns of 100 calls ...", flush=True)
            for key, row in measure_interleaved(cases, n_led).items():
                if key in counted:
                    path, before = counted[key]
                    recorded = (_count(path) or 0) - (before or 0)
                    expected = n_led + max(10, n_led // 10)
                    if recorded != expected:
                        row.note += f"; WARNING: ledger recorded {recorded:,} calls for {expected:,} guarded calls"
                add(key, row)
        except Exception as exc:
            traceback.print_exc()
            for key, case in cases.items():
                if key not in rows:
                    add(key, unavailable(case.name, f"failed ({short(exc)})"))
        finally:
            with _stderr_to_devnull():  # the info row's Guard logs its run's end
                for close in closers:
                    with contextlib.suppress(Exception):
                        close()

        # 5. what a worker pays at start on the largest ledger: recovery finding nothing to do
        if seeds and f"guarded{max(seeds)}" in rows:
            try:
                times = guard_cases.time_recovery(str(work / f"ledger-{max(seeds)}.db"))
                add("recover", summarize(f"Guard.recover() with nothing to do, {max(seeds):,} earlier calls",
                                         times, 0, note="once per worker start; CPU not measured"))
            except Exception as exc:
                traceback.print_exc()
                add("recover", unavailable("Guard.recover()", f"failed ({short(exc)})"))

        # 6. DBOS per step (subprocess, same venv, same disk)
        for defaults in (False, True):
            key = "dbos_defaults" if defaults else "dbos"
            try:
                add(key, run_dbos(work / f"dbos{'-defaults' if defaults else ''}.db", n_led, defaults))
            except Exception as exc:
                add(key, unavailable(f"DBOS step ({key})", f"dbos: failed ({short(exc)})"))
    finally:
        if "--keep" in argv:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    order = ["bare", "guarded", "guarded_traced", "guarded_always", "guarded_info", *[f"guarded{s}" for s in seeds],
             "sql", "floor",
             "recover", "dbos", "dbos_defaults",
             "classify100", "edictum100", "classify60000", "edictum60000"]
    print()
    print(markdown_table([rows[k] for k in order if k in rows]))
    print()
    g, b = rows.get("guarded"), rows.get("bare")
    if g is not None and g.ok and b is not None and b.ok:
        print(f"Guard overhead per call (guarded p50 - bare p50): {g.p50_us - b.p50_us:,.2f} µs")
    sql, fl = rows.get("sql"), rows.get("floor")
    if g is not None and g.ok and sql is not None and sql.ok and fl is not None and fl.ok:
        print(f"where it goes: the ledger's SQL alone is {sql.p50_us:,.0f} µs ({ratio(sql, fl)}x the floor), "
              f"Guard's Python the other {g.p50_us - sql.p50_us:,.0f} µs; "
              f"every commit durable: {ratio(rows.get('guarded_always'), fl)}x the floor")
    biggest = f"guarded{max(seeds)}" if seeds else None
    growth_label = "1M" if seeds and max(seeds) == 1_000_000 else (f"{max(seeds):,}" if seeds else "none")
    if growth_label != "1M":
        print(f"note: growth below is {growth_label}/empty (BENCH_SEEDS), not 1M/empty")
    print(f"total wall time: {time.perf_counter() - t_start:.0f} s")
    print(f"bench: guarded/floor {ratio(rows.get('guarded'), rows.get('floor'))}, "
          f"growth 1M/empty {ratio(rows.get(biggest) if biggest else None, rows.get('guarded'))}, "
          f"guarded/dbos {ratio(rows.get('guarded'), rows.get('dbos'))}, "
          f"classify/edictum {ratio(rows.get('classify100'), rows.get('edictum100'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
