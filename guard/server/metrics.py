"""`GET /metrics`: what waits on people and what is stuck, for Prometheus, read from the ledger at each scrape.

Every figure is a gauge taken from the ledger when Prometheus asks, so every replica of the service reports the
same numbers and nothing is lost when one restarts. Each comes from an index (pending approvals, unfinished
runs, the calls in flight, undelivered notifications), never from a scan of every call.

Only counts by team and state are shown: no run ids, no arguments. Set `metrics_token` (`guard serve` reads
$GUARD_METRICS_TOKEN) to require `Authorization: Bearer <token>` for them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from guard.errors import LedgerUnavailable
from guard.ledger import Ledger, shadow_verdicts
from guard.server.health import HealthCollector

__all__ = ["LedgerCollector", "metrics_router"]


class LedgerCollector(Collector):
    """The ledger's open work as Prometheus gauges, labelled by team (and state)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        work = self.ledger.open_work()
        pending = GaugeMetricFamily(
            "guard_approvals_pending", "Approvals waiting for a reviewer's decision.", labels=["team"]
        )
        oldest = GaugeMetricFamily(
            "guard_approval_oldest_pending_seconds",
            "How long the oldest waiting approval has waited, by the database clock.",
            labels=["team"],
        )
        for team, count, requested_at in work.pending:
            pending.add_metric([team], count)
            oldest.add_metric([team], max(0.0, work.now - requested_at))
        runs = GaugeMetricFamily(
            "guard_runs_unfinished",
            "Runs not completed or rolled back: running, paused for a person, rolling back, pending review, halted.",
            labels=["team", "state"],
        )
        for team, state, count in work.runs:
            runs.add_metric([team, state], count)
        calls = GaugeMetricFamily(
            "guard_calls_unsettled",
            "Calls started and not ended, or in doubt (their outcome is not known).",
            labels=["team", "state"],
        )
        for team, state, count in work.unsettled:
            calls.add_metric([team, state], count)
        notices = GaugeMetricFamily(
            "guard_notifications_undelivered",
            "Webhook notifications that failed, or are being sent.",
            labels=["team", "state"],
        )
        for team, state, count in work.notices:
            notices.add_metric([team, state], count)
        shadow = CounterMetricFamily(
            "guard_shadow_verdicts",
            "Calls a rule in `mode: shadow` would have decided otherwise (policy rules: "
            "labelled by the rule enforced; stop rules: by their name).",
            labels=["team", "rule", "kind"],
        )
        with self.ledger.conns.read() as cur:
            for team, rule, kind, verdicts in shadow_verdicts(cur):
                shadow.add_metric([team, rule, kind], verdicts)
        yield from (pending, oldest, runs, calls, notices, shadow)


def metrics_router(ledger: Ledger, token: str | None = None) -> APIRouter:
    """The `/metrics` route over `ledger`; with `token`, only a request bearing it is answered."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger))
    registry.register(HealthCollector(ledger))  # the three numbers (issue 14)
    router = APIRouter()

    @router.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
            401: {"description": "a metrics token is set and the request does not bear it"},
            503: {"description": "the ledger cannot be reached"},
        },
    )
    def metrics(request: Request) -> Response:
        """The ledger's open work by team, in Prometheus' text format."""
        if token is not None:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return JSONResponse(
                    {"detail": "send Authorization: Bearer <the metrics token>", "code": "unauthorized"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        try:
            body = generate_latest(registry)
        except LedgerUnavailable as exc:
            return JSONResponse(
                {"detail": f"the ledger cannot be reached ({exc})", "code": "ledger_unavailable"}, status_code=503
            )
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
