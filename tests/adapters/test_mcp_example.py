"""`make example-mcp` keeps telling its story: examples/mcp_crm/run.py checks every step it prints and exits
non-zero when one does not happen (allowed calls ran, the delete was denied, the email ran once, approved)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp_crm" / "run.py"


def test_the_mcp_crm_example_runs_offline_and_its_checks_hold(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env={**os.environ, "MCP_CRM_STATE": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: allowed calls ran, the delete was denied" in done.stdout
    assert "email.send_prospect            irreversible  completed" in done.stdout  # the ledger's story
    assert (tmp_path / "guard.db").exists()
