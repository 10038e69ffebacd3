# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`python -m bench` — Guard's per-call cost against a bare call, the SQLite floor, DBOS and Edictum.

Runs every row in one process on one disk, three times over (BENCH_RUNS): run 1 of every row, then run 2, then
run 3. It prints each run's figures and their median; every figure in the table and in the summary line is a
median (a ratio is taken inside each run, whose rows met the same moments, then the median of the runs').

The rows that write to disk (the floor, Guard's, the ledger's SQL
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
  BENCH_RUNS         runs of every row (default 3); each figure is the median of its runs
  BENCH_WORK_DIR     where the database files go (default bench/); e.g. /dev/shm to take the disk out of the
                     figures on a machine whose disk other tenants saturate (then commits never wait for it)
  BENCH_NO_VENV=1    run in the current interpreter, do not build/enter .venv-bench/
The last line printed is always the `bench: ...` summary, in this form (figures are medians):
  bench: guarded/floor 1.28, cpu guarded/floor 1.9, worst p99/p50 1.8, growth 1M/empty 1.02, guarded/dbos 0.25, \
classify/edictum 0.04
`worst p99/p50` is the largest, over the guarded rows, of a row's median p99/p50.
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
        subprocess.check_call([str(VENV / "bin/python"), "-m", "pip", "install", "-q", "-e", str(ROOT), "-r", str(req)])
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


def _load() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was while it measured."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def run_dbos(db_path: Path, n: int, dbos_defaults: bool):
    from bench.stats import Row, unavailable

    name = "DBOS step, " + ("DBOS's own SQLite defaults" if dbos_defaults else "Guard's SQLite settings")
    cmd = [sys.executable, "-m", "bench.dbos_case", str(db_path), str(n)]
    if dbos_defaults:
        cmd.append("--dbos-defaults")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return Row.from_json(json.loads(line[len("BENCH_JSON ") :]))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return unavailable(name, f"dbos: failed ({tail[:150]})")


def main(argv: list[str]) -> int:
    ensure_venv()
    from bench import edictum_case, floor, guard_cases, seed
    from bench.stats import (
        Case,
        fmt_ratio,
        markdown_table,
        measure,
        measure_interleaved,
        median_of,
        median_row,
        quotient,
        runs_table,
        summarize,
        unavailable,
    )

    quick = "--quick" in argv
    n_led = int(os.environ.get("BENCH_N") or (200 if quick else 2000))
    n_mem = int(os.environ.get("BENCH_N_MEM") or (20_000 if quick else 200_000))
    seeds = [int(s) for s in os.environ.get("BENCH_SEEDS", "100000,1000000").split(",") if s.strip()]
    runs = max(1, int(os.environ.get("BENCH_RUNS") or 3))
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=os.environ.get("BENCH_WORK_DIR") or BENCH_DIR))

    print("# Guard benchmark")
    print(
        f"python {platform.python_version()} ({sys.executable}), sqlite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"database files: {work}  [{filesystem_of(work)}]")
    print(
        f"iterations: {n_led:,} per ledger-bound row, {n_mem:,} per in-memory row "
        f"(+10% warm-up), {runs} runs of every row; GC on; load average {_load()}",
        flush=True,
    )

    per_run: dict[str, list] = {}  # key -> its Row in each run, in order

    def add(key: str, row, run: int | None = None) -> None:
        per_run.setdefault(key, []).append(row)
        val = f"p50 {row.p50_us:,.2f} µs, p99 {row.p99_us:,.2f} µs, cpu {row.cpu_us:,.2f} µs" if row.ok else row.note
        print(f"  {'' if run is None else f'[run {run}] '}{row.name}: {val}", flush=True)

    # Everything is measured `runs` times, in turns (run 1 of every row, then run 2 of every row, ...), so that a
    # shared machine's drift falls on every row alike; each figure printed is the median of its runs.
    closers: list = []
    cases: dict = {}
    counted: dict = {}  # key -> (ledger file, calls of bench.noop before)
    try:
        # 1. bare call (same shape as the guarded call: one keyword argument)
        def bare_noop(i: int) -> None:
            return None

        counter = itertools.count()
        memory: dict = {"bare": ("bare Python call (no-op tool)", lambda: bare_noop(i=next(counter)), "")}
        # policy classification: Guard vs Edictum
        for amount in (100, 60_000):
            args = {"amount_cents": amount}
            what = "falls through to `invoice`" if amount == 100 else "matches `big-invoice` (approval)"
            try:
                classify = guard_cases.make_classifier()
                memory[f"classify{amount}"] = (
                    f"Guard classify, amount_cents={amount}",
                    functools.partial(classify, "billing.create_invoice", args),
                    what,
                )
            except Exception as exc:  # Guard core not there yet, or its API moved
                add(
                    f"classify{amount}",
                    unavailable(f"Guard classify, amount_cents={amount}", f"guard: not available ({short(exc)})"),
                )
            try:
                evaluate = edictum_case.make_evaluator()
                memory[f"edictum{amount}"] = (
                    f"Edictum {edictum_case.version()} evaluate, amount_cents={amount}",
                    functools.partial(evaluate, "billing.create_invoice", args),
                    "YAML pre rule `args.amount_cents gt 50000 -> ask`",
                )
            except Exception as exc:
                add(
                    f"edictum{amount}",
                    unavailable(f"Edictum evaluate, amount_cents={amount}", f"edictum: not available ({short(exc)})"),
                )

        # 2-4. everything that writes to disk, measured in turns on files of its own (see measure_interleaved):
        # the two-commit floor, the guarded no-op (default, every commit durable, info logs), the ledger's SQL
        # alone, and the guarded no-op on ledgers that already hold earlier calls.
        try:
            call, close, settings = floor.make_two_commits(str(work / "floor.db"))
            closers.append(close)
            # Warmed up past its WAL's first checkpoint (1,000 pages: 500 calls), as a long-lived ledger's WAL is:
            # while a new WAL file still grows, every commit also flushes its size and costs half as much again.
            cases["floor"] = Case(
                "SQLite floor: insert+commit, update+commit", call, note=settings, warmup=max(600, n_led // 10)
            )
            ledgers = {
                "guarded": work / "ledger.db",
                "guarded_always": work / "ledger-always.db",
                "guarded_info": work / "ledger-info.db",
                "guarded_plain": work / "ledger-plain.db",
                "guarded_global": work / "ledger-global.db",
            }
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
                print(
                    f"  (seeded {path.name} to {target:,} earlier calls in {time.perf_counter() - t0:.1f} s; "
                    f"calls table holds {total:,}; file {path.stat().st_size / 2**20:,.0f} MiB)",
                    flush=True,
                )
            for key, path in ledgers.items():
                durability = "always" if key == "guarded_always" else "by_class"
                log_level = "info" if key == "guarded_info" else "warning"
                target = key.removeprefix("guarded")
                label = (
                    "Guard guarded no-op, "
                    + (f"{int(target):,} earlier calls" if target.isdigit() else "empty ledger")
                    + {
                        "guarded_always": ", every commit durable",
                        "guarded_info": ", info logs",
                        "guarded_traced": ", traced (OTel SDK, in-memory)",
                        "guarded_plain": ", without tamper evidence (for comparison)",
                        "guarded_global": ", the audit chain as before #12 (one global chain)",
                    }.get(key, "")
                )
                note = (
                    f"auto-approved idempotent no-op, one open run, log_level={log_level}, "
                    f"durability={durability}, tracing "
                    + (
                        "on: SDK TracerProvider, in-memory exporter"
                        if key == "guarded_traced"
                        else "off"
                        if not guard_cases.otel_api()
                        else "off: OTel API without an SDK"
                    )
                )
                # At `info` Guard writes a log line per call to stderr: rendered, then sent to /dev/null here.
                around = (
                    _stderr_to_devnull
                    if log_level == "info"
                    else guard_cases.without_tamper_evidence
                    if key == "guarded_plain"
                    else guard_cases.with_global_chain
                    if key == "guarded_global"
                    else None
                )
                with around() if around is not None else contextlib.nullcontext():
                    call, close = guard_cases.make_guarded_noop(
                        str(path), log_level=log_level, durability=durability, traced=key == "guarded_traced"
                    )
                closers.append(close)
                counted[key] = (path, _count(path))
                cases[key] = Case(
                    label,
                    call,
                    note=note
                    + (" (stderr to /dev/null)" if log_level == "info" else "")
                    + (
                        " (events as plain inserts: no row digests, hashes or stream heads)"
                        if key == "guarded_plain"
                        else " (one hash chain over all events, its head the newest event; no row digests or "
                        "stream heads)"
                        if key == "guarded_global"
                        else ""
                    ),
                    around=around,
                    settle=functools.partial(_flush, path),
                )
            replay, close_replay, statements = guard_cases.make_sql_replay(
                str(work), runs * n_led + max(10, n_led // 10)
            )
            closers.append(close_replay)
            cases["sql"] = Case(
                "Guard's ledger SQL alone, replayed without Guard",
                replay,
                note=f"the {statements} statements of one guarded no-op as Guard sent them "
                "(durability=by_class), on a ledger file of its own",
                settle=functools.partial(_flush, work / "replay.db"),
            )
            os.sync()  # what seeding left in the OS's cache goes to disk now, not during the measurements
        except Exception as exc:
            traceback.print_exc()
            for key, case in cases.items():
                add(key, unavailable(case.name, f"failed ({short(exc)})"))
            cases = {}

        for run in range(1, runs + 1):
            print(f"run {run} of {runs}:", flush=True)
            for key, (name, fn, note) in memory.items():
                add(key, measure(name, fn, n_mem, note=note), run)
            if cases:
                print(f"  measuring {len(cases)} disk-bound rows in turns of 100 calls ...", flush=True)
                try:
                    for key, row in measure_interleaved(cases, n_led, warm=run == 1).items():
                        add(key, row, run)
                except Exception as exc:
                    traceback.print_exc()
                    for key, case in cases.items():
                        add(key, unavailable(case.name, f"failed ({short(exc)})"), run)
                    cases = {}
            # DBOS per step (subprocess, same venv, same disk)
            for defaults in (False, True):
                key = "dbos_defaults" if defaults else "dbos"
                try:
                    add(key, run_dbos(work / f"dbos{'-defaults' if defaults else ''}-{run}.db", n_led, defaults), run)
                except Exception as exc:
                    add(key, unavailable(f"DBOS step ({key})", f"dbos: failed ({short(exc)})"), run)
        for key, (path, before) in counted.items():
            recorded = (_count(path) or 0) - (before or 0)
            expected = runs * n_led + max(10, n_led // 10)
            if recorded != expected and per_run.get(key):
                for row in per_run[key]:
                    row.note += f"; WARNING: ledger recorded {recorded:,} calls for {expected:,} guarded calls"
    finally:
        with _stderr_to_devnull():  # the info row's Guard logs its run's end
            for close in closers:
                with contextlib.suppress(Exception):
                    close()
        # what a worker pays at start on the largest ledger: recovery finding nothing to do (once: not a ratio)
        if seeds and per_run.get(f"guarded{max(seeds)}"):
            try:
                times = guard_cases.time_recovery(str(work / f"ledger-{max(seeds)}.db"))
                add(
                    "recover",
                    summarize(
                        f"Guard.recover() with nothing to do, {max(seeds):,} earlier calls",
                        times,
                        0,
                        note="once per worker start; CPU not measured",
                    ),
                )
            except Exception as exc:
                traceback.print_exc()
                add("recover", unavailable("Guard.recover()", f"failed ({short(exc)})"))
        if "--keep" in argv:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    guarded_keys = ["guarded", "guarded_always", "guarded_info", *[f"guarded{s}" for s in seeds]]
    order = [
        "bare",
        "guarded_traced",
        *guarded_keys,
        "guarded_plain",
        "guarded_global",
        "sql",
        "floor",
        "recover",
        "dbos",
        "dbos_defaults",
        "classify100",
        "edictum100",
        "classify60000",
        "edictum60000",
    ]
    rows = {key: median_row(per_run[key]) for key in order if key in per_run}
    print()
    print(f"Each figure is the median of {runs} runs (the runs' own figures follow the table).")
    print(markdown_table([rows[k] for k in order if k in rows]))
    print()
    print(runs_table([(per_run[k][0].name, per_run[k]) for k in order if k in per_run and len(per_run[k]) > 1]))
    print()

    def each_run(fn) -> list[float | None]:
        """fn(run index) for every run: a ratio inside one run, whose rows were measured in the same turns."""
        return [fn(i) for i in range(runs)]

    def p50(key: str, i: int) -> float | None:
        rs = per_run.get(key) or []
        return rs[i].p50_us if i < len(rs) and rs[i].ok else None

    def cpu(key: str, i: int) -> float | None:
        rs = per_run.get(key) or []
        return rs[i].cpu_us if i < len(rs) and rs[i].ok else None

    def tail(key: str, i: int) -> float | None:
        rs = per_run.get(key) or []
        return quotient(rs[i].p99_us, rs[i].p50_us) if i < len(rs) and rs[i].ok else None

    def show(label: str, values: list[float | None], digits: int = 2) -> float | None:
        mid = median_of(values)
        print(f"{label}: {' / '.join(fmt_ratio(v, digits) for v in values)} -> median {fmt_ratio(mid, digits)}")
        return mid

    g = rows.get("guarded")
    b = rows.get("bare")
    if g is not None and g.p50_us is not None and b is not None and b.p50_us is not None:
        print(f"Guard overhead per call (guarded p50 - bare p50, medians): {g.p50_us - b.p50_us:,.2f} µs")
    biggest = f"guarded{max(seeds)}" if seeds else None
    growth_label = "1M" if seeds and max(seeds) == 1_000_000 else (f"{max(seeds):,}" if seeds else "none")
    if growth_label != "1M":
        print(f"note: growth below is {growth_label}/empty (BENCH_SEEDS), not 1M/empty")
    print("ratios in each run (rows measured in the same turns), then their median:")
    g_floor = show("  guarded/floor (p50)", each_run(lambda i: quotient(p50("guarded", i), p50("floor", i))))
    cpu_floor = show("  cpu guarded/floor", each_run(lambda i: quotient(cpu("guarded", i), cpu("floor", i))), 1)
    show("  sql alone/floor (p50)", each_run(lambda i: quotient(p50("sql", i), p50("floor", i))))
    show("  every commit durable/floor (p50)", each_run(lambda i: quotient(p50("guarded_always", i), p50("floor", i))))
    # What the tamper evidence (#12: row digests, per-stream hash chains, stream heads) adds to a call: over no
    # evidence at all, and over the chain as it was before #12 (#12's rule: at most 10% more per call).
    for label, other in (("without", "guarded_plain"), ("chain before #12", "guarded_global")):
        show(
            f"  tamper evidence: guarded/{label} (p50)",
            each_run(lambda i, o=other: quotient(p50("guarded", i), p50(o, i))),
        )
        show(
            f"  tamper evidence: cpu guarded/{label}",
            each_run(lambda i, o=other: quotient(cpu("guarded", i), cpu(o, i))),
        )
    worst, worst_key = None, None
    for key in guarded_keys:
        if key in per_run:
            mid = show(f"  p99/p50 {per_run[key][0].name}", each_run(lambda i, k=key: tail(k, i)), 1)
            if mid is not None and (worst is None or mid > worst):
                worst, worst_key = mid, key
    show("  p99/p50 SQLite floor", each_run(lambda i: tail("floor", i)), 1)
    if worst_key is not None:
        print(f"  worst p99/p50 of the guarded rows: {per_run[worst_key][0].name}")
    growth = show(
        f"  growth {growth_label}/empty (p50)",
        each_run(lambda i: quotient(p50(biggest, i), p50("guarded", i))) if biggest else [None],
    )
    g_dbos = show("  guarded/dbos (p50)", each_run(lambda i: quotient(p50("guarded", i), p50("dbos", i))))
    c_ed = show("  classify/edictum (p50)", each_run(lambda i: quotient(p50("classify100", i), p50("edictum100", i))))
    print(f"total wall time: {time.perf_counter() - t_start:.0f} s; load average now {_load()}")
    print(
        f"bench: guarded/floor {fmt_ratio(g_floor)}, cpu guarded/floor {fmt_ratio(cpu_floor, 1)}, "
        f"worst p99/p50 {fmt_ratio(worst, 1)}, growth 1M/empty {fmt_ratio(growth)}, "
        f"guarded/dbos {fmt_ratio(g_dbos)}, classify/edictum {fmt_ratio(c_ed)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
