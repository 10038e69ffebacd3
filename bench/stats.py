# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""Timing loop and percentile summary shared by every benchmark row.

Latency: time.perf_counter_ns around each call (the two timer reads are included, ~0.1 µs).
CPU: time.process_time_ns over the whole timed loop divided by the number of calls (all threads of
the process, so a library's background threads are charged to it). Garbage collection is left on.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    n: int
    p50_us: float | None = None
    p95_us: float | None = None
    p99_us: float | None = None
    cpu_us: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.p50_us is not None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "n": self.n,
            "p50_us": self.p50_us,
            "p95_us": self.p95_us,
            "p99_us": self.p99_us,
            "cpu_us": self.cpu_us,
            "note": self.note,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: dict) -> Row:
        return cls(**d)


def summarize(name: str, samples_ns: list[int], cpu_ns: int, note: str = "") -> Row:
    """Row from per-call latencies (ns) and the CPU time (ns) the timed loop used."""
    n = len(samples_ns)
    if n < 2:
        raise ValueError("need at least 2 samples")
    q = statistics.quantiles(samples_ns, n=100, method="inclusive")  # q[k-1] is the k-th percentile
    return Row(
        name=name, n=n, p50_us=q[49] / 1e3, p95_us=q[94] / 1e3, p99_us=q[98] / 1e3, cpu_us=cpu_ns / n / 1e3, note=note
    )


def measure(name: str, fn: Callable[[], object], n: int, warmup: int | None = None, note: str = "") -> Row:
    """Call fn() `warmup` times untimed, then n times timed one by one."""
    if warmup is None:
        warmup = max(10, n // 10)
    for _ in range(warmup):
        fn()
    pc = time.perf_counter_ns
    samples = [0] * n
    cpu0 = time.process_time_ns()
    for i in range(n):
        t0 = pc()
        fn()
        samples[i] = pc() - t0
    cpu = time.process_time_ns() - cpu0
    return summarize(name, samples, cpu, note)


@dataclass
class Case:
    """One row measured by `measure_interleaved`: `fn` makes one call; `around` wraps each block and `settle`
    runs after it, untimed (both optional)."""

    name: str
    fn: Callable[[], object]
    note: str = ""
    around: Callable[[], contextlib.AbstractContextManager[object]] | None = None
    settle: Callable[[], object] | None = None
    warmup: int | None = None  # untimed calls first; None: the runner's default


def measure_interleaved(
    cases: dict[str, Case], n: int, block: int = 100, warmup: int | None = None, warm: bool = True
) -> dict[str, Row]:
    """Measure every case `n` times, in turns of `block` calls (case A, B, C, A, B, C, ...).

    A shared machine drifts (other tenants, the disk's background work) by tens of percent over a minute.
    Sequential rows each catch a different moment, and a ratio between two of them mostly measures that drift;
    in turns, every case sees the same moments, so their ratios hold from run to run. `warm=False` skips the
    untimed calls (a second run of the same cases). A case that leaves
    writes in the OS's cache (a commit that did not wait for the disk) must flush them in `settle`: else the
    next case's first disk flush would pay for them (one journal commit flushes the whole filesystem's).
    """
    if warmup is None:
        warmup = max(10, n // 10)
    pc = time.perf_counter_ns
    samples: dict[str, list[int]] = {key: [] for key in cases}
    cpu: dict[str, int] = dict.fromkeys(cases, 0)
    for case in cases.values() if warm else ():  # a later run of the same cases is warm already
        with case.around() if case.around is not None else contextlib.nullcontext():
            for _ in range(case.warmup if case.warmup is not None else warmup):
                case.fn()
    while any(len(samples[key]) < n for key in cases):
        for key, case in cases.items():
            todo = min(block, n - len(samples[key]))
            if todo <= 0:
                continue
            fn, out = case.fn, samples[key]
            with case.around() if case.around is not None else contextlib.nullcontext():
                cpu0 = time.process_time_ns()
                for _ in range(todo):
                    t0 = pc()
                    fn()
                    out.append(pc() - t0)
                cpu[key] += time.process_time_ns() - cpu0
            if case.settle is not None:
                case.settle()
    return {key: summarize(case.name, samples[key], cpu[key], case.note) for key, case in cases.items()}


def median_row(runs: list[Row]) -> Row:
    """One row whose every figure is the median of that figure over `runs` (the runs that succeeded)."""
    ok = [r for r in runs if r.ok]
    if not ok:
        return runs[0]
    first = ok[0]

    def med(attr: str) -> float | None:
        values = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
        return statistics.median(values) if values else None

    note = first.note + (f"; median of {len(ok)} runs" if len(ok) > 1 else "")
    return Row(
        name=first.name,
        n=sum(r.n for r in ok),
        p50_us=med("p50_us"),
        p95_us=med("p95_us"),
        p99_us=med("p99_us"),
        cpu_us=med("cpu_us"),
        note=note,
        extra=first.extra,
    )


def median_of(values: list[float | None]) -> float | None:
    """The median of the figures that could be computed (None when none could)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def quotient(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def fmt_ratio(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def unavailable(name: str, reason: str) -> Row:
    return Row(name=name, n=0, note=reason)


def ratio(a: Row | None, b: Row | None) -> str:
    if a is None or b is None or a.p50_us is None or not b.p50_us:  # not .ok: pyright cannot narrow a property
        return "n/a"
    return f"{a.p50_us / b.p50_us:.2f}"


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def runs_table(rows: list[tuple[str, list[Row]]]) -> str:
    """Each row's figures in every run, then their median: `run 1 / run 2 / run 3 -> median`."""

    def cell(runs: list[Row], attr: str) -> str:
        values = [getattr(r, attr) if r.ok else None for r in runs]
        return f"{' / '.join(_fmt(v) for v in values)} -> {_fmt(median_of(values))}"

    lines = [
        "| case | p50 µs by run -> median | p99 µs by run -> median | CPU/call µs by run -> median |",
        "| --- | --- | --- | --- |",
    ]
    for name, runs in rows:
        lines.append(f"| {name} | {cell(runs, 'p50_us')} | {cell(runs, 'p99_us')} | {cell(runs, 'cpu_us')} |")
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| case | n | p50 µs | p95 µs | p99 µs | CPU/call µs | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.n:,} | {_fmt(r.p50_us)} | {_fmt(r.p95_us)} | {_fmt(r.p99_us)} "
            f"| {_fmt(r.cpu_us)} | {r.note} |"
        )
    return "\n".join(lines)
