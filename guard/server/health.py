"""The three numbers for Prometheus: pause rate by step, retry success after a first failure, time from a failure
to clean completion (a histogram), and approval wait time (a histogram), per team and tool, over the last
`WINDOW` seconds, read from the ledger (`guard.ledger.numbers`) so every replica agrees.

Reading them scans the window's calls and events, so the figures are kept for `TTL` seconds between reads: a
scrape every 15 s costs one read a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from guard.ledger import HealthNumbers, Ledger, health_numbers

__all__ = ["BUCKETS", "TTL", "WINDOW", "HealthCollector", "histogram"]

WINDOW = 7 * 86400.0
TTL = 60.0
BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)


def histogram(values: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative Prometheus buckets (`le`, count) and the sum."""
    buckets = [(repr(le), float(sum(1 for v in values if v <= le))) for le in BUCKETS]
    buckets.append(("+Inf", float(len(values))))
    return buckets, float(sum(values))


class HealthCollector(Collector):
    def __init__(self, ledger: Ledger, window: float = WINDOW, ttl: float = TTL) -> None:
        self.ledger = ledger
        self.window = window
        self.ttl = ttl
        self._lock = threading.Lock()
        self._kept: tuple[float, HealthNumbers] | None = None

    def numbers(self) -> HealthNumbers:
        with self._lock:
            now = time.monotonic()
            if self._kept is None or now - self._kept[0] > self.ttl:
                self._kept = (now, health_numbers(self.ledger.conns, time.time() - self.window))
            return self._kept[1]

    def collect(self) -> Iterator[Metric]:
        n = self.numbers()
        days = f"over the last {self.window / 86400:g} days"
        calls = GaugeMetricFamily("guard_window_calls", f"Calls made {days}.", labels=["team", "tool"])
        rate = GaugeMetricFamily(
            "guard_pause_rate",
            f"Calls that stopped their run for a person, over calls, {days}.",
            labels=["team", "tool"],
        )
        retried = GaugeMetricFamily(
            "guard_retried_calls", f"Calls that needed more than one attempt, {days}.", labels=["team", "tool"]
        )
        retry_ok = GaugeMetricFamily(
            "guard_retry_success_ratio",
            f"Of the calls retried after a first failure, the share that completed, {days}.",
            labels=["team", "tool"],
        )
        for (team, tool), t in sorted(n.by_tool.items()):
            calls.add_metric([team, tool], t.calls)
            rate.add_metric([team, tool], t.pause_rate)
            retried.add_metric([team, tool], t.retried)
            if t.retry_success is not None:
                retry_ok.add_metric([team, tool], t.retry_success)
        clean = HistogramMetricFamily(
            "guard_failure_to_clean_seconds",
            f"Seconds from a run's first failure to its clean end, by the failing tool, {days}.",
            labels=["team", "tool"],
        )
        for (team, tool), values in sorted(n.fail_to_clean.items()):
            buckets, total = histogram(values)
            clean.add_metric([team, tool], buckets, total)
        wait = HistogramMetricFamily(
            "guard_approval_wait_seconds", f"Seconds approvals waited for a decision, {days}.", labels=["team", "tool"]
        )
        for (team, tool), values in sorted(n.approval_wait.items()):
            buckets, total = histogram(values)
            wait.add_metric([team, tool], buckets, total)
        yield from (calls, rate, retried, retry_ok, clean, wait)
