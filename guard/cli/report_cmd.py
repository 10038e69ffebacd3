"""`guard report --since 7d`: the three numbers per team and tool, read from the ledger (the same figures the
service gives Prometheus)."""

from __future__ import annotations

import statistics
import time
from typing import Annotated

import typer

from guard.cli.common import DbOption, JsonFlag, echo, emit, guarded_command, open_ledger
from guard.cli.incident_cmd import closing, parse_when
from guard.spans import format_span


@guarded_command
def report(
    since: Annotated[str, typer.Option(help="The window: 7d, 24h, Unix seconds or an ISO time.")] = "7d",
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Pause rate by step, retry success after a first failure, time from failure to clean completion, and
    approval wait time, per team and tool."""
    from guard.ledger import health_numbers

    start = parse_when(since, time.time()) or 0.0
    numbers = health_numbers(closing(open_ledger(db)).conns, start)
    data = numbers.to_json()
    data["tools"] = [t for t in data["tools"] if team is None or t["team"] == team]
    if as_json:
        emit(data)
        return
    if not data["tools"]:
        echo(f"no calls since {since}")
        return
    echo(
        f"{'team':<12} {'tool':<32} {'calls':>6} {'paused':>7} {'rate':>6} {'retried':>8} {'ok':>4} "
        f"{'failure->clean (median, max)':>30} {'approval wait (median)':>24}"
    )
    for t in data["tools"]:
        clean, wait = t["fail_to_clean_seconds"], t["approval_wait_seconds"]
        clean_text = (
            f"{format_span(statistics.median(clean))}, {format_span(max(clean))} (n={len(clean)})" if clean else "-"
        )
        wait_text = f"{format_span(statistics.median(wait))} (n={len(wait)})" if wait else "-"
        echo(
            f"{t['team']:<12} {t['tool']:<32} {t['calls']:>6} {t['paused']:>7} {t['pause_rate']:>6.1%} "
            f"{t['retried']:>8} {t['retried_ok']:>4} {clean_text:>30} {wait_text:>24}"
        )
