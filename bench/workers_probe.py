# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""Where a worker process of `python -m bench.workers --profile PREFIX` spends its CPU (Linux, CPython 3.11).

Per worker, over the measured seconds: a cProfile of the calling thread (written to `PREFIX-<worker>.prof`, read
with `python -m pstats`), the CPU time of each thread of the process (from `/proc/self/task/*/schedstat`, so the
background threads' share shows: heartbeat, WAL checkpointer, write-queue waiter), and SQLite's page-cache hits
and misses summed over the ledger's connections (`sqlite3_db_status`; a miss is a page read from the file or
its log, which SQLite does for every page again after another connection wrote, unless the file is mapped).
"""

from __future__ import annotations

import cProfile
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from typing import Any

__all__ = ["Probe"]

_CACHE_HIT, _CACHE_MISS = 7, 8  # SQLITE_DBSTATUS_CACHE_HIT / _MISS


def _sqlite_lib() -> Any:
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)  # its symbols resolve through the libsqlite3 it links
    lib.sqlite3_db_status.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    return lib


def _handle(conn: Any) -> int:
    """The `sqlite3 *` of a stdlib connection: the first field after the object header (CPython 3.11)."""
    return ctypes.c_void_p.from_address(id(conn) + 16).value or 0


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, by thread name (threads of the same name summed)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except OSError:
            continue
        name = names.get(int(tid), f"native-{tid}").split(":")[0]
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


_EVENTS = "instructions:u,cycles:u,instructions:k,cycles:k,context-switches"


def _perf_stat(out: str) -> subprocess.Popen[bytes]:
    """`perf stat` on this process (every thread) until SIGINT: instructions are the work done whatever else the
    machine runs; cycles per instruction is what the load (caches, switches) adds to it."""
    proc = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e", _EVENTS, "-p", str(os.getpid())])
    time.sleep(0.05)  # perf attaches: a bench probe, not a test
    return proc


def _perf_counts(path: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                out[parts[2]] = float(parts[0])
    return out


class Probe:
    """Started when the measured loop starts; `stop()` returns what it saw."""

    def __init__(self, guard: Any, out: str, cprofile: bool) -> None:
        self._conns = guard.ledger.conns
        self._queue = guard.ledger.conns.backend.writers
        self._waits0 = self._queue.waits
        self._out = out
        self._lib = _sqlite_lib()
        self._cache0 = self._cache()
        self._threads0 = _thread_cpu()
        self._perf = _perf_stat(f"{out}.perf") if shutil.which("perf") else None
        self._profile = cProfile.Profile(time.thread_time) if cprofile else None  # CPU, not waits
        if self._profile is not None:
            self._profile.enable()

    def _cache(self) -> tuple[int, int]:
        cur, high = ctypes.c_int(), ctypes.c_int()
        hits = misses = 0
        for conn in list(self._conns._all):  # a bench probe reads the pool's connections
            db = _handle(conn)
            self._lib.sqlite3_db_status(db, _CACHE_HIT, ctypes.byref(cur), ctypes.byref(high), 0)
            hits += cur.value
            self._lib.sqlite3_db_status(db, _CACHE_MISS, ctypes.byref(cur), ctypes.byref(high), 0)
            misses += cur.value
        return hits, misses

    def stop(self) -> dict[str, Any]:
        if self._profile is not None:
            self._profile.disable()
            self._profile.dump_stats(f"{self._out}.prof")
        threads = _thread_cpu()
        counts = {}
        if self._perf is not None:
            self._perf.send_signal(signal.SIGINT)
            self._perf.wait()
            counts = _perf_counts(f"{self._out}.perf")
        hits, misses = self._cache()
        return {
            "threads": {k: v - self._threads0.get(k, 0.0) for k, v in threads.items()},
            "cache_hits": hits - self._cache0[0],
            "cache_misses": misses - self._cache0[1],
            "queue_waits": self._queue.waits - self._waits0,
            "perf": counts,
        }
