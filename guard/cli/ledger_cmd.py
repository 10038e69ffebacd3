"""`guard ledger ...` and `guard db ...`: check the audit trail, migrate the database."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from guard.cli.common import DbOption, JsonFlag, echo, emit, fail, guarded_command, open_ledger

if TYPE_CHECKING:  # the ledger is imported inside the commands: `guard policy ...` starts without it
    from guard.ledger import AuditReport, SealFile

ledger_app = typer.Typer(help="The ledger's audit trail.", no_args_is_help=True)
db_app = typer.Typer(help="The ledger database: migrations.", no_args_is_help=True)


KeyFile = Annotated[
    str | None,
    typer.Option(
        "--key-file",
        envvar="GUARD_SEAL_KEY_FILE",
        help="The seal's Ed25519 private key (PEM file, never in the ledger).",
    ),
]
KeyEnv = Annotated[str | None, typer.Option("--key-env", help="Name of an environment variable holding the PEM.")]
SinkFile = Annotated[
    Path | None,
    typer.Option(
        "--sink", envvar="GUARD_SEAL_SINK", help="JSON-lines file every seal is appended to (ship it elsewhere)."
    ),
]


@ledger_app.command("verify")
@guarded_command
def verify(
    db: DbOption = None,
    as_json: JsonFlag = False,
    seals: Annotated[Path | None, typer.Option("--seals", help="The seal sink file to check against.")] = None,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", envvar="GUARD_SEAL_PUBLIC_KEY", help="The seals' public key: PEM file or base64."),
    ] = None,
) -> None:
    """Check every stream's hash chain and every covered row against what Guard wrote; with --seals and
    --public-key, also against the last seal. Exit 1 naming each stream and row that was tampered with; what
    came after the last seal is listed as not yet sealed."""
    from guard.ledger import SealFile, load_public_key

    if (seals is None) != (public_key is None):
        fail("--seals and --public-key go together: the seals are only as good as the key that checks them")
    sealed = SealFile.read(seals, load_public_key(public_key)) if seals is not None and public_key else None
    report = open_ledger(db).verify_chain(sealed.checkpoints if sealed is not None else None)
    problems = sealed.problems if sealed is not None else []
    ok = report.ok and not problems
    if as_json:
        emit(
            {
                "ok": ok,
                "checked": report.checked,
                "rows": report.rows,
                "streams": report.streams,
                "found": report.found,
                "findings": [asdict(f) for f in report.findings],
                "seal_problems": problems,
                "sealed": sealed is not None,
                "seals": sealed.seals if sealed else 0,
                "last_seal_at": sealed.last_at if sealed else None,
                "not_yet_sealed": {
                    "streams": report.unsealed_streams,
                    "events": report.unsealed_events,
                    "rows": report.unsealed_row_count,
                    "list": [asdict(u) for u in report.unsealed],
                    "row_list": [list(r) for r in report.unsealed_rows],
                },
            }
        )
    else:
        _show_report(report, sealed, problems)
    if not ok:
        raise typer.Exit(1)


def _show_report(report: AuditReport, sealed: SealFile | None, problems: list[str]) -> None:
    for problem in problems:
        echo(f"SEALS: {problem}")
    for f in report.findings:
        echo(f"TAMPERED: {f.kind}: {f.problem}")
    if report.found > len(report.findings):
        echo(f"... and {report.found - len(report.findings)} more findings")
    if sealed is None:
        echo(
            "no seals checked: pass --seals FILE --public-key KEY; without them a rewrite that re-hashes "
            "a whole stream is not detected"
        )
    else:
        echo(f"{sealed.seals} seal(s) checked, the last at {sealed.last_at}")
        if report.unsealed_events:
            echo(
                f"not yet sealed: {report.unsealed_events} event(s) in {report.unsealed_streams} stream(s), "
                f"{report.unsealed_row_count} row(s) last written after the last seal"
            )
            for u in report.unsealed[:20]:
                echo(f"  {u.stream}: events #{u.first}..#{u.last}")
            for table, key, stream in report.unsealed_rows[:20]:
                echo(f"  {table} {key} ({stream})")
    verdict = "ok" if report.ok and not problems else "TAMPERED"
    echo(f"{verdict}: {report.checked} events in {report.streams} streams, {report.rows} rows checked")


@ledger_app.command("seal")
@guarded_command
def seal(db: DbOption = None, key_file: KeyFile = None, key_env: KeyEnv = None, sink: SinkFile = None) -> None:
    """Sign every stream's head now: the seal goes to the ledger and is appended to the sink file."""
    from guard.ledger import Signer

    if sink is None:
        fail("name the seal sink: --sink FILE or $GUARD_SEAL_SINK (a seal kept only in the ledger proves little)")
    signer = Signer.load(key_file=key_file, key_env=key_env)
    made = open_ledger(db).seal(signer, sink=sink)
    echo(
        f"seal {made.number}: {made.streams} streams, {made.events} events, {made.changed} changed; "
        f"root {made.root[:16]}..., appended to {sink}"
    )


@ledger_app.command("keygen")
@guarded_command
def keygen(path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, mode 0600).")]) -> None:
    """Make an Ed25519 seal key: the private key at PATH and the public key at PATH.pub."""
    from guard.ledger import generate_key

    public = generate_key(path)
    echo(f"private key: {path} (keep it outside the ledger's host if you can)\npublic key: {public}")


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
    from guard.ledger import sqlite_path

    path = sqlite_path(url)
    return path is None or path.exists()
