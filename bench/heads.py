# pyright: basic
"""`python -m bench.heads [N ...]` — how often a commit depends on another writer's chain head.

N writers (threads, or processes with `--processes`), each on its own run, offer and complete calls on one
ledger. Afterwards the events are read in commit order:
- with one global chain (Guard up to migration 0006), every event's hash covers the event before it whoever
  wrote it, so a commit whose previous commit came from another writer had to wait for that writer's head: on a
  database with row locks, a queue on one hot row. Counted as `global head hand-offs`.
- with a chain per stream, a commit depends only on its own stream's head: `stream head hand-offs` counts
  commits whose stream was last extended by another writer (zero when writers work on different runs).
SQLite serialises every writer on its one write lock anyway; the count says what PostgreSQL would queue on.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from guard.canonical import args_hash
from guard.ledger import CallRequest, Ledger, new_id

CALLS = 200


def _writer(url: str, run_id: str, calls: int, start: threading.Barrier | None = None) -> None:
    led = Ledger(url)
    led.open_run(run_id, "bench", actor="agent")
    if start is not None:
        start.wait()
    for i in range(calls):
        args = {"i": i}
        offer = led.offer(
            CallRequest(
                call_id=new_id("call"),
                run_id=run_id,
                team="bench",
                tool="crm.lookup",
                args_json=json.dumps(args),
                args_hash=args_hash(args),
                idempotency_key=None,
                verdict="allow",
                side_effect="read",
                rule="r",
                reason="",
                policy_version="v",
                actor="agent",
            )
        )
        led.complete(
            run_id, offer.call_id, token=offer.lease_token, result_json="{}", external_ids={}, attempts=1, actor="agent"
        )
    led.close()


def _process_writer(url: str, run_id: str, calls: int) -> None:
    _writer(url, run_id, calls)


def measure(n: int, processes: bool) -> tuple[int, int, int, float]:
    """(transactions, global head hand-offs, stream head hand-offs, seconds) for `n` writers."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'heads.db'}"
        Ledger(url).close()
        t0 = time.perf_counter()
        if processes:
            ctx = multiprocessing.get_context("spawn")
            procs = [ctx.Process(target=_process_writer, args=(url, f"run-{w}", CALLS)) for w in range(n)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
        else:
            barrier = threading.Barrier(n)
            threads = [threading.Thread(target=_writer, args=(url, f"run-{w}", CALLS, barrier)) for w in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        seconds = time.perf_counter() - t0
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        # One transaction per (stream, contiguous id range): consecutive events of one stream were one commit's.
        rows = conn.execute("SELECT stream FROM events ORDER BY id").fetchall()
        conn.close()
    commits: list[str] = []
    for (stream,) in rows:
        if not commits or commits[-1] != stream:
            commits.append(stream)
    global_handoffs = sum(1 for a, b in itertools.pairwise(commits) if a != b)
    last_writer: dict[str, str] = {}
    stream_handoffs = 0
    for stream in commits:  # a run's stream is written only by its own writer: its previous writer is itself
        if last_writer.get(stream, stream) != stream:
            stream_handoffs += 1
        last_writer[stream] = stream
    return n * (1 + 2 * CALLS), global_handoffs, stream_handoffs, seconds


def main(argv: list[str]) -> None:
    processes = "--processes" in argv
    counts = [int(a) for a in argv if a.isdigit()] or [1, 2, 4, 8]
    kind = "processes" if processes else "threads"
    print(f"{'writers':>8} {'commits':>8} {'global-head hand-offs':>22} {'stream-head hand-offs':>22} {'calls/s':>8}")
    for n in counts:
        commits, old, new, seconds = measure(n, processes)
        print(f"{n:>8} {commits:>8} {old:>22} {new:>22} {n * CALLS / seconds:>8.0f}   ({kind})")


if __name__ == "__main__":
    main(sys.argv[1:])
