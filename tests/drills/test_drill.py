"""`guard drill --team T` end to end, on each backend: the team's stand-in tools (examples/drill, named in its
policy), a scripted bad run that its brakes pause, the blast radius found through an incident, every record
repaired by its compensation, the pause lifted; the three times printed and kept in the ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard import Guard
from guard.cli.app import app
from guard.drills import run_drill
from guard.errors import DrillFailed
from guard.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "examples" / "drill" / "policies"
runner = CliRunner()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    return folder


def test_a_drill_pauses_finds_the_blast_radius_and_cleans_up_printing_and_keeping_its_three_times(
    ledger_url: str, policies: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the stand-ins are imported as examples.drill.stand_ins, from the current directory
    args = ["drill", "--team", "crm-sync", "--db", ledger_url, "--policies", str(policies), "--as", "olga"]
    done = runner.invoke(app, [*args, "--snapshots", str(tmp_path / "snaps"), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    assert result["state"] == "passed"
    assert all(result[t] is not None and result[t] >= 0 for t in ("pause_s", "radius_s", "clean_s"))
    # the records rule allows 5 contacts per run: 5 statuses and 5 enrollments, the 6th status denied
    assert result["by_system"] == {"crm": {"completed": 5, "denied": 1}, "mail": {"completed": 5}}
    assert result["records"] == 10

    ledger = Ledger(ledger_url)
    try:
        [kept] = ledger.drills("crm-sync")
        assert (kept.id, kept.state, kept.drilled_by, kept.records) == (result["drill"], "passed", "olga", 10)
        assert (kept.pause_s, kept.radius_s, kept.clean_s) == (result["pause_s"], result["radius_s"], result["clean_s"])
        assert ledger.active_pauses(["crm-sync"]) == []  # clean state: the drill's pause is lifted
        calls = ledger.calls_of(result["run_id"])
        assert sorted(c.state for c in calls) == ["denied"] + ["rolled_back"] * 10
        run = ledger.get_run(result["run_id"])
        assert run is not None and run.state == "finished_by_hand"
        assert ledger.verify_chain().ok  # the drill's row is claimed by a chained event
    finally:
        ledger.close()

    shown = runner.invoke(app, ["drill", "--team", "crm-sync", "--db", ledger_url, "--history"])
    assert shown.exit_code == 0, shown.output
    assert f"drill {result['drill']}  passed  by olga  pause {result['pause_s']:.3f} s" in shown.output


def test_a_drill_whose_brakes_never_pause_fails_at_pause_and_is_kept_as_failed(
    ledger: Ledger, ledger_url: str, policies: Path, tmp_path: Path
) -> None:
    text = (policies / "crm-sync.yaml").read_text().replace("max: 5, on_trip: pause", "max: 500, on_trip: pause")
    (policies / "crm-sync.yaml").write_text(text)
    from examples.drill.stand_ins import stand_ins

    guard = Guard(policies=policies, db=ledger_url, log_level="error")
    try:
        with pytest.raises(DrillFailed) as failed:
            run_drill(guard, "crm-sync", stand_ins, by="olga", snapshot_dir=tmp_path / "snaps")
        assert failed.value.step == "pause"
        assert "nothing paused" in str(failed.value)
        [kept] = ledger.drills("crm-sync")
        assert (kept.state, kept.pause_s, kept.radius_s, kept.clean_s) == ("failed", None, None, None)
        assert json.loads(kept.detail)["failed_at"] == "pause"
    finally:
        guard.close()


def test_the_cli_refuses_a_team_without_stand_ins_naming_where_to_declare_them(ledger_url: str, policies: Path) -> None:
    text = (policies / "crm-sync.yaml").read_text()
    (policies / "crm-sync.yaml").write_text(
        text.replace("drill:\n  stand_ins: examples.drill.stand_ins:stand_ins\n", "")
    )
    refused = runner.invoke(app, ["drill", "--team", "crm-sync", "--db", ledger_url, "--policies", str(policies)])
    assert refused.exit_code == 2
    assert "declares no stand-in tools: add `drill: {stand_ins: module:function}`" in refused.output
