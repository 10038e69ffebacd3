"""After a bad run: a contact sync writes the wrong status into 200 CRM records until its stop rule stops it; the
operator pauses it, opens an incident, prints the blast radius, takes the snapshot, the team tags every record
(scripted here, against billing's truth), the operator repairs a sample, then the rest, and the counts match.

Every operator step is the `guard incident ...` command line an on-call would type. Run from the repository root:
`make example-bad-run`. Exits non-zero when a promise of the story breaks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from examples.bad_run.agent import TEAM, app, make_tools, state_dir, sync_contacts  # noqa: E402

EVENT = "nightly-sync-2026-12-04"
APP = "examples.bad_run.agent:app"
CONTACTS = 260
FAILED: list[str] = []


def check(ok: bool, promise: str) -> None:
    print(f"  [{'ok' if ok else 'BROKEN'}] {promise}")
    if not ok:
        FAILED.append(promise)


def plan_of(i: int) -> str:
    """Billing's truth: most contacts pay, every fourth cancelled, a few have no plan on record."""
    return "cancelled" if i % 4 == 0 else "unknown" if i % 10 == 7 else "paid"


def guard_cli(db: str, *args: str) -> str:
    """One operator command, as typed (a long list of `--call` ids shortened); its output is printed and returned."""
    shown = [*args[:8], f"... ({len(args) - 10} more)", *args[-2:]] if len(args) > 12 else args
    print(f"$ guard {' '.join(shown)}")
    done = subprocess.run(
        [sys.executable, "-m", "guard", *args, "--db", db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GUARD_OPERATOR": "olga"},
    )
    out = done.stdout
    if "--json" not in args and "json" not in args:  # machine output is read, not shown
        for line in out.splitlines()[:40]:
            print(f"    {line}")
    if done.returncode != 0:
        print(done.stderr)
        raise SystemExit(f"guard {' '.join(args)} failed ({done.returncode})")
    return out


def main() -> int:
    where = Path(tempfile.mkdtemp(prefix="guard-bad-run-"))
    db = f"sqlite:///{where / 'guard.db'}"
    guard = app(db)
    tools = make_tools(guard, state_dir(db))
    plans = {f"ct_{i:03d}": plan_of(i) for i in range(CONTACTS)}
    tools.billing.seed(plans)
    truth = {c: ("customer" if p == "paid" else "churned" if p == "cancelled" else "lead") for c, p in plans.items()}
    tools.crm.seed(truth)

    print("1. The nightly contact sync runs with a broken mapping: a paid plan lands as `churned`.")
    written, stopped = sync_contacts(guard, tools, EVENT)
    print(f"   it wrote {written} statuses before it was stopped: {stopped}")
    check(
        written == 200 and stopped is not None and "stop rule" in stopped,
        "the stop rule stopped the sync at 200 status writes",
    )
    guard.close()

    print("\n2. The owner pauses the sync's writes at the source before anyone investigates.")
    guard_cli(
        db,
        "pause",
        "--tool",
        "crm.set_contact_status",
        "--in-team",
        TEAM,
        "--reason",
        "sync writes churned for paying customers",
    )
    guard_cli(db, "pause", "--tool", "mail.enroll_winback", "--in-team", TEAM, "--reason", "same sync")

    print("\n3. The operator opens an incident on the sync's run and prints the blast radius.")
    opened = json.loads(
        guard_cli(
            db,
            "incident",
            "open",
            "--source-event",
            EVENT,
            "--title",
            "contact sync wrote churned into paying customers",
            "--owner",
            "olga",
            "--next-update",
            "2h",
            "--json",
        )
    )
    inc = opened["incident_id"]
    print(f"   incident {inc}")
    radius = json.loads(guard_cli(db, "incident", "export", inc, "--format", "json"))
    print(f"   {radius['summary']}")
    print(f"   by system: {radius['by_system']}")
    before = radius["by_system"]
    guard_cli(db, "incident", "export", inc, "--format", "csv", "--out", str(where / "radius.csv"))

    print("\n4. The snapshot before repair: ledger facts plus each record read back from the CRM and the mailer.")
    guard_cli(db, "incident", "snapshot", inc, str(where / "snapshot.jsonl"), "--app", APP)

    print("\n5. The team judges every record against billing's truth (scripted), record by record.")
    notes = {
        "wrong": "pays: must be customer",
        "safe": "cancelled: churned is right",
        "unclear": "no plan on record: ask billing",
    }
    by_verdict: dict[str, list[str]] = {"wrong": [], "safe": [], "unclear": []}
    changed = [r for r in radius["calls"] if r["state"] == "completed"]  # the rest were stopped before they ran
    check(len(changed) == radius["records_changed"], "every record that changed data is judged")
    for r in changed:
        contact = r["external_ids"].get("contact") or r["external_ids"].get("enrollment", "").removeprefix("wb_")
        plan = plans[contact]
        by_verdict["wrong" if plan == "paid" else "safe" if plan == "cancelled" else "unclear"].append(r["call_id"])
    for verdict, ids in by_verdict.items():
        calls = [arg for call_id in ids for arg in ("--call", call_id)]
        guard_cli(db, "incident", "tag", inc, verdict, *calls, "--note", notes[verdict], "--as", "rita")
    guard_cli(db, "incident", "note", inc, "billing confirms 15 contacts with no plan; they stay unclear")
    judged = json.loads(guard_cli(db, "incident", "export", inc, "--format", "json"))
    print(f"   {judged['summary']}")

    print("\n6. Repair a sample of 10, look at it, then the rest.")
    guard_cli(db, "incident", "repair", inc, "--app", APP, "--sample", "10")
    guard_cli(db, "incident", "repair", inc, "--app", APP, "--rest")
    again = json.loads(guard_cli(db, "incident", "repair", inc, "--app", APP, "--rest", "--json"))

    print("\n7. The status update.")
    guard_cli(db, "incident", "show", inc)
    guard_cli(db, "incident", "verify-snapshot", inc)
    after = json.loads(guard_cli(db, "incident", "export", inc, "--format", "json"))["by_system"]

    print("\nChecks:")
    guard = app(db)
    tools = make_tools(guard, state_dir(db))
    crm, mail = tools.crm.statuses(), tools.mail
    touched = sorted(plans)[:200]
    wrong = [c for c in touched if plans[c] == "paid"]
    others = [c for c in touched if plans[c] != "paid"]
    n_wrong, n_safe, n_unclear = len(by_verdict["wrong"]), len(by_verdict["safe"]), len(by_verdict["unclear"])
    print(f"   records: {n_wrong} wrong, {n_safe} safe, {n_unclear} unclear (of {sum(map(len, by_verdict.values()))})")
    print(f"   before: {before}\n   after:  {after}")
    check(
        all(sum(before[s].values()) == sum(after[s].values()) for s in before),
        "every system holds as many records after the repair as before",
    )
    check(
        after["crm"].get("rolled_back") == len(wrong) and after["mail"].get("rolled_back") == len(wrong),
        f"{len(wrong)} CRM statuses and {len(wrong)} win-back enrollments repaired, no more",
    )
    check(all(crm[c] == "customer" for c in wrong), "every paying contact is a customer again in the CRM")
    check(all(crm[c] == "churned" for c in others), "the safe and unclear records were left as they are")
    check(mail.enrolled() == len(others), f"{len(others)} enrollments stand: the safe and unclear ones")
    check(
        tools.crm.total_writes() == 200 + len(wrong) and mail.total_changes() == 200 + len(wrong),
        "each repair ran exactly once in the other system",
    )
    check(again["repaired"] == 0 and again["left"] == 0, "repairing again runs nothing")
    guard.close()
    verified = json.loads(guard_cli(db, "ledger", "verify", "--json"))
    check(verified["ok"], "the ledger verifies: incident rows and the trail are as Guard wrote them")
    print(
        f"\n{len(FAILED)} broken promise(s)."
        if FAILED
        else f"\nDone: {n_wrong + n_safe + n_unclear} records changed in 2 systems, {n_wrong} repaired, counts match. "
        f"State in {where}"
    )
    return 1 if FAILED else 0


if __name__ == "__main__":
    raise SystemExit(main())
