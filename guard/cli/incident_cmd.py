"""`guard incident ...`: after a bad run. Open an incident on a scope, read its blast radius, take the snapshot
before repair, judge its records, repair the wrong ones (a sample, then the rest), keep one shared note.

`snapshot` (for the records' state now) and `repair` run the agent's tool code, so they load its Guard with
`--app`; the rest reads and writes the ledger only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import click
import typer

from guard import spans
from guard.cli.choices import CALL_STATES, INCIDENT_STATES, JUDGED, VERDICTS
from guard.cli.common import (
    DbOption,
    JsonFlag,
    PoliciesDir,
    Who,
    echo,
    emit,
    fail,
    guarded_command,
    load_app,
    open_ledger,
    operator_name,
    policy_dir,
    when,
)

if TYPE_CHECKING:  # imported inside the commands: `guard policy ...` starts without the ledger
    from guard.incidents import IncidentBook

app = typer.Typer(
    help="Incidents: what a bad run touched, the evidence, people's verdicts, and the repair.", no_args_is_help=True
)

Incident = Annotated[str, typer.Argument(help="The incident id (see `guard incident list`).")]


def parse_when(text: str | None, now: float | None = None) -> float | None:
    """`guard.spans.parse_when` for an option that may be absent; a time it cannot read exits 2 with the reason."""
    if text is None:
        return None
    try:
        return spans.parse_when(text, now)
    except ValueError as exc:
        fail(str(exc), 2)


def closing(thing: Any) -> Any:
    """`thing` (a ledger or a Guard), closed when the command ends, whichever way it ends."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(thing.close)
    return thing


def _book(db: str | None, policies: Path | None = None) -> IncidentBook:
    """The incidents of the ledger; each record in the system its team's policy names (`systems:`) when the
    policies are at hand (`--policies`, else ./policies when it exists), else the system of its tool's prefix."""
    from guard.incidents import IncidentBook, TeamSystems
    from guard.policy import PolicySet

    folder = policy_dir(policies)
    systems = None
    if policies is not None or folder.is_dir():
        systems = TeamSystems(PolicySet.load_dir(folder).policies)
    return IncidentBook(closing(open_ledger(db)), systems=systems)


@app.command("open")
@guarded_command
def open_incident(
    title: Annotated[str, typer.Option("--title", help="What went wrong, in a few words.")],
    run: Annotated[list[str] | None, typer.Option("--run", help="A run in scope. Repeat for several.")] = None,
    source_event: Annotated[
        list[str] | None,
        typer.Option("--source-event", help="The runs of this source event are in scope. Repeat for several."),
    ] = None,
    team: Annotated[str | None, typer.Option(help="A window of this team's calls.")] = None,
    tool: Annotated[list[str] | None, typer.Option("--tool", help="Only these tools (globs). Repeat.")] = None,
    since: Annotated[str | None, typer.Option(help="Window start: 7d, 2h, Unix seconds or ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Window end, as --since.")] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            help="Who owns it: a reviewer of every team in scope (per --policies).", show_default="whoever opens it"
        ),
    ] = None,
    next_update: Annotated[
        str, typer.Option("--next-update", help="When the next status update is due, from now: 30m, 1h, 2h.")
    ] = "1h",
    who: Who = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Open an incident on runs, the runs of source events, or a team's window (tools, from, to)."""
    from guard.incidents import Scope
    from guard.policy import PolicySet

    folder = policy_dir(policies)
    if owner is not None and not folder.is_dir():
        fail(f"--owner must be a reviewer of the team per its policy, and there is no policy folder at {folder}", 2)

    now = time.time()
    due = parse_when(next_update, now)
    scope = Scope(
        team=team,
        run_ids=tuple(run or ()),
        source_event_ids=tuple(source_event or ()),
        tools=tuple(tool or ()),
        since=parse_when(since, now),
        until=parse_when(until, now),
    )
    book = _book(db, policies)
    inc = book.open(
        scope,
        title=title,
        opened_by=operator_name(who),
        owner=owner,
        next_update_in=None if due is None else now - due,
        policies=None if owner is None else PolicySet.load_dir(folder).policies,
    )
    if as_json:
        emit(inc.to_dict())
        return
    echo(f"opened {inc.incident_id}: {inc.title} (owner {inc.owner})")
    echo(
        f"  first run started {when(inc.started_at)}, paused {when(inc.paused_at)}, "
        f"last changed data {when(inc.last_changed_at)}"
    )
    echo(f"  {book.radius(inc.incident_id).summary()}")


@app.command("list")
@guarded_command
def list_incidents(
    state: Annotated[
        str | None, typer.Option(parser=INCIDENT_STATES, metavar="STATE", help="Only these: open or closed.")
    ] = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Incidents, newest first."""
    incidents = _book(db).list(state=state)
    if as_json:
        emit([i.to_dict() for i in incidents])
        return
    if not incidents:
        echo("no incidents")
    for i in incidents:
        teams = ",".join(i.teams) or "-"
        echo(f"{i.incident_id}  {i.state:<6} {teams:<12} {when(i.opened_at)}  owner {i.owner}  {i.title}")


@app.command("show")
@guarded_command
def show(incident_id: Incident, db: DbOption = None, policies: PoliciesDir = None, as_json: JsonFlag = False) -> None:
    """A plain status update (what happened, what looks wrong, what still looks normal, the next update), then
    the shared log."""
    from guard.incidents import status_update

    book = _book(db, policies)
    if as_json:
        emit(
            {
                "incident": book.get(incident_id).to_dict(),
                "status": status_update(book, incident_id),
                "radius": {k: v for k, v in book.radius(incident_id).to_json().items() if k != "calls"},
                "log": book.log(incident_id),
            }
        )
        return
    for line in status_update(book, incident_id):
        echo(line)
    echo("Log:")
    for entry in book.log(incident_id):
        echo(f"  {when(entry['at'])}  {entry['author']:<10} {entry['kind']:<6} {entry['text']}")


@app.command("export")
@guarded_command
def export(
    incident_id: Incident,
    fmt: Annotated[
        Literal["json", "csv"],
        typer.Option("--format", help="json (counts and every record) or csv (one record a line)."),
    ] = "json",
    out: Annotated[Path | None, typer.Option(help="Write to this file.", show_default="stdout")] = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
) -> None:
    """The blast radius: every record in scope with its system, state, external ids and verdict."""
    import json

    radius = _book(db, policies).radius(incident_id)
    text = radius.to_csv() if fmt == "csv" else json.dumps(radius.to_json(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        echo(f"{radius.summary()}; written to {out}")


@app.command("note")
@guarded_command
def note(
    incident_id: Incident, text: Annotated[str, typer.Argument(help="The note.")], who: Who = None, db: DbOption = None
) -> None:
    """Add a line to the incident's shared log."""
    _book(db).note(incident_id, text, by=operator_name(who))
    echo("noted")


@app.command("close")
@guarded_command
def close(
    incident_id: Incident,
    note_text: Annotated[str, typer.Option("--note", help="How it ended.")],
    who: Who = None,
    db: DbOption = None,
) -> None:
    """Close the incident (it takes no more verdicts, notes or repairs)."""
    _book(db).close(incident_id, note_text, by=operator_name(who))
    echo(f"closed {incident_id}")


@app.command("tag")
@guarded_command
def tag(
    incident_id: Incident,
    verdict: Annotated[str, typer.Argument(parser=VERDICTS, metavar="VERDICT", help="safe, wrong or unclear.")],
    call: Annotated[list[str] | None, typer.Option("--call", help="A record's call id. Repeat.")] = None,
    system: Annotated[str | None, typer.Option(help="Records of this system.")] = None,
    state: Annotated[
        str | None,
        typer.Option(
            parser=CALL_STATES,
            metavar="STATE",
            help="Records in this state: offered, awaiting_approval, approved, rejected, expired, denied, started, "
            "completed, failed, in_doubt, rolling_back, rolled_back or rollback_failed.",
        ),
    ] = None,
    tool: Annotated[str | None, typer.Option(help="Records of this tool (glob).")] = None,
    run: Annotated[str | None, typer.Option(help="Records of this run.")] = None,
    external_id: Annotated[str | None, typer.Option(help="The record with this external id.")] = None,
    judged: Annotated[
        str | None,
        typer.Option(
            "--judged",
            parser=JUDGED,
            metavar="VERDICT",
            help="Only records with this verdict now: safe, wrong, unclear or none (not yet judged).",
        ),
    ] = None,
    note_text: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    who: Who = None,
    db: DbOption = None,
) -> None:
    """Judge records safe / wrong / unclear, one by one (--call) or by filter; every verdict is kept."""
    from guard.incidents import RecordFilter

    which = RecordFilter(
        call_ids=tuple(call or ()),
        system=system,
        state=state,
        tool=tool,
        run_id=run,
        external_id=external_id,
        verdict=judged,
    )
    book = _book(db)
    matched, changed = book.tag(incident_id, which, verdict, by=operator_name(who), note=note_text)  # pyright: ignore[reportArgumentType]
    echo(f"{matched} record(s) matched, {changed} judged {verdict}; {book.radius(incident_id).summary()}")


@app.command("history")
@guarded_command
def history(
    incident_id: Incident,
    call: Annotated[str | None, typer.Option(help="One record's call id.")] = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Every verdict given in the incident (or on one record), oldest first."""
    rows = _book(db).history(incident_id, call)
    if as_json:
        emit(rows)
        return
    for h in rows:
        why = f"  ({h['note']})" if h["note"] else ""
        echo(f"{when(h['at'])}  {h['by']:<10} {h['call_id']}  {h['verdict']}{why}")


@app.command("snapshot")
@guarded_command
def snapshot(
    incident_id: Incident,
    file: Annotated[Path, typer.Argument(help="A new file (JSON lines).")],
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="The agent's Guard (module:attribute): its tools' .inspect hooks read each record's state now.",
            show_default="ledger facts only",
        ),
    ] = None,
    who: Who = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Take the snapshot before anyone repairs: written once, its SHA-256 recorded in the ledger."""
    from guard.incidents.repair import inspector_for

    inspect = None
    book = _book(db, policies)
    if app_spec is not None:
        inspect = inspector_for(closing(load_app(app_spec, db)))
    taken = book.snapshot(incident_id, file, by=operator_name(who), inspect=inspect)
    if as_json:
        emit(
            {
                "path": taken.path,
                "sha256": taken.digest,
                "records": taken.records,
                "inspected": taken.inspected,
                "seconds": taken.seconds,
            }
        )
        return
    echo(f"snapshot of {taken.records} record(s) ({taken.inspected} read back) written to {taken.path}")
    echo(f"  sha256 {taken.digest} (recorded in the ledger)")


@app.command("verify-snapshot")
@guarded_command
def verify_snapshot(
    incident_id: Incident,
    file: Annotated[Path | None, typer.Argument(help="The snapshot file.", show_default="the recorded path")] = None,
    db: DbOption = None,
) -> None:
    """Check a snapshot file against the digest recorded in the ledger; exit 1 when it differs."""
    check = _book(db).verify(incident_id, file)
    if not check.ok:
        fail(check.problem or "the snapshot does not match")
    echo(f"the snapshot matches the digest recorded in the ledger (sha256 {check.actual})")


@app.command("repair")
@guarded_command
def repair(
    incident_id: Incident,
    app_spec: Annotated[
        str,
        typer.Option(
            "--app", help="The agent's Guard (module:attribute): its tools' compensations repair the records."
        ),
    ],
    sample: Annotated[int | None, typer.Option(min=1, help="Repair the first N wrong records left.")] = None,
    rest: Annotated[bool, typer.Option("--rest", help="Repair every wrong record left (after a sample).")] = False,
    repair_tool: Annotated[
        str | None,
        typer.Option(
            help="A repair tool of the Guard instead of each record's compensation.", show_default="the compensation"
        ),
    ] = None,
    who: Who = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Repair the records judged wrong with their compensation, as guarded calls that never run twice."""
    from guard.incidents import IncidentBook, TeamSystems
    from guard.incidents.repair import repair as run_repair
    from guard.runtime.doors import ledger_of

    guard = closing(load_app(app_spec, db))
    book = IncidentBook(ledger_of(guard), systems=TeamSystems(guard.policies.policies))
    report = run_repair(
        guard, book, incident_id, operator=operator_name(who), sample=sample, rest=rest, repair_tool=repair_tool
    )
    if as_json:
        emit(report.to_json())
        return
    echo(
        f"repaired {len(report.repaired)}, failed {len(report.failed)}, waiting {len(report.waiting)}, "
        f"skipped {len(report.skipped)}; {report.left} wrong record(s) left"
    )
    for system in sorted(set(report.before) | set(report.after)):
        before = ", ".join(f"{n} {s}" for s, n in report.before.get(system, {}).items())
        after = ", ".join(f"{n} {s}" for s, n in report.after.get(system, {}).items())
        echo(f"  {system}: before {before or '-'}; after {after or '-'}")
