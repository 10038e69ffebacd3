"""`guard policy replay`: decide every recorded call again under other policies, and list what would change.

Exit codes: 0 nothing would be loosened, 1 something would (allowed that was not: put it in CI), 2 usage error (no
ledger, a policy folder that cannot be read, an invalid policy file in it, a bad --since).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from guard.cli.common import DbOption, JsonFlag, echo, emit, fail, guarded_command, open_ledger


@guarded_command
def replay(
    policies: Annotated[
        Path,
        typer.Option("--policies", help="The folder of changed <team>.yaml files to decide the recorded calls under."),
    ],
    run: Annotated[str | None, typer.Option("--run", help="Only this run's calls.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only calls offered this long ago or later, e.g. 7d.", show_default="every call"),
    ] = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay the ledger's recorded calls under the policies in --policies: from each call's stored tool,
    arguments, team and its run's history (for the stop rules), never running a tool. Lists every call whose
    decision would change (allowed -> needs approval, approval -> denied, a new class, a stop rule that would
    trip, and the reverse), and shadow rules that would trip. Teams without a file in --policies are left out.
    Exit 1 when anything would be loosened."""
    from guard.ledger import recorded_calls
    from guard.policy import PolicySet, parse_duration
    from guard.runtime.replay import replay as decide_again

    if run is not None and since is not None:
        fail("say --run or --since, not both", 2)
    try:
        cutoff = None if since is None else time.time() - parse_duration(since)
    except ValueError as exc:
        fail(f"--since takes a duration such as 7d or 12h ({exc})", 2)
    new = PolicySet.load_dir(policies)
    if new.errors:
        fail("; ".join(str(err) for err in new.errors.values()), 2)
    if not new.policies:
        fail(f"no policy files in {policies}", 2)
    ledger = open_ledger(db)
    try:
        records = recorded_calls(ledger.conns, run_id=run, since=cutoff, teams=sorted(new.policies))
    finally:
        ledger.close()
    report = decide_again(records, new)
    if as_json:
        emit(report.to_json())
    else:
        for r in report.changed:
            for c in r.changes:
                echo(f"{r.run_id} #{r.seq} {r.tool}: {c.kind} {c.before} -> {c.after} ({c.direction})")
        echo(
            f"{report.calls} call(s) decided again in {report.seconds:.2f}s: {report.count('tightened')} tightened, "
            f"{report.count('loosened')} loosened, {report.count('shadow')} shadow verdict(s); no tool ran"
        )
    if report.loosened:
        raise typer.Exit(1)
