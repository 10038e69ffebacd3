"""`guard ledger ...` and `guard db ...`: check the audit trail, migrate the database."""

from __future__ import annotations

import typer

from guard.cli.common import DbOption, JsonFlag, echo, emit, guarded_command, open_ledger

ledger_app = typer.Typer(help="The ledger's audit trail.", no_args_is_help=True)
db_app = typer.Typer(help="The ledger database: migrations.", no_args_is_help=True)


@ledger_app.command("verify")
@guarded_command
def verify(db: DbOption = None, as_json: JsonFlag = False) -> None:
    """Recompute the hash chain of every event; exit 1 and name the first bad row if it was tampered with."""
    report = open_ledger(db).verify_chain()
    if as_json:
        emit({"ok": report.ok, "checked": report.checked, "bad_id": report.bad_id, "problem": report.problem})
    elif report.ok:
        echo(f"ok: {report.checked} events, hash chain intact")
    else:
        echo(f"TAMPERED: event id {report.bad_id}: {report.problem} ({report.checked} events before it "
             "verify)")
    if not report.ok:
        raise typer.Exit(1)


@db_app.command("upgrade")
@guarded_command
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the ledger database to the schema this Guard needs."""
    from guard.ledger import current_revision, resolve_url, upgrade

    url = resolve_url(db)
    before = current_revision(url) if not url.startswith("sqlite:") or _exists(url) else None
    after = upgrade(url)
    echo(f"{url}: {before or 'empty'} -> {after}" if before != after else f"{url}: already at {after}")


@db_app.command("status")
@guarded_command
def db_status(db: DbOption = None) -> None:
    """Say which schema revision the database is at; exit 1 when it needs `guard db upgrade`."""
    from guard.ledger import HEAD_REVISION, current_revision, resolve_url

    url = resolve_url(db)
    rev = current_revision(url) if _exists(url) else None
    echo(f"{url}: at {rev or 'no schema'}, this Guard needs {HEAD_REVISION}")
    if rev != HEAD_REVISION:
        raise typer.Exit(1)


def _exists(url: str) -> bool:
    from guard.ledger.database import sqlite_path

    path = sqlite_path(url)
    return path is None or path.exists()
