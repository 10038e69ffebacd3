"""`python -m guard_mcp policy-init`: a draft policy from the tools a real MCP server lists, valid for
`guard policy validate`, never looser than the safest reading of the annotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcp_world import SERVER, guard_cli, server_env

from guard import PolicySet, Verdict


def test_policy_init_prints_a_valid_draft_with_the_strictest_class_each_tools_hints_allow(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "guard_mcp", "policy-init", "--team", "crm", "--", sys.executable, str(SERVER)],
        env=server_env(tmp_path / "effects.jsonl"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    draft = done.stdout
    assert draft.startswith("# DRAFT") and "Review every rule" in draft and "hints, not facts" in draft
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "crm.yaml").write_text(draft)
    checked = guard_cli("policy", "validate", str(folder / "crm.yaml"))
    assert checked.returncode == 0 and checked.stdout.startswith("ok"), checked.stdout + checked.stderr

    policies = PolicySet.load_dir(folder)
    decided = {
        tool: policies.classify("crm", tool, {})
        for tool in ("upsert_contact", "send_quote", "create_invoice", "void_invoice", "provision_account")
    }
    classes = {tool: (d.verdict.value, d.side_effect.value if d.side_effect else None) for tool, d in decided.items()}
    assert classes == {
        "upsert_contact": ("allow", "idempotent"),  # idempotentHint, destructiveHint=false
        "send_quote": ("allow", "read"),  # readOnlyHint: a suggestion the owner must review
        "create_invoice": ("approve", "irreversible"),  # no annotations: the safest reading
        "void_invoice": ("approve", "irreversible"),  # idempotent but destructive
        "provision_account": ("approve", "irreversible"),
    }
    assert decided["create_invoice"].approval is not None and decided["create_invoice"].approval.roles == ("owner",)
    assert policies.classify("crm", "charge_card", {}).verdict is Verdict.DENY  # not listed: denied
    assert not (tmp_path / "effects.jsonl").exists()  # listing tools ran none of them


def test_guard_policy_init_drafts_from_an_mcp_server_through_the_installed_source(tmp_path: Path) -> None:
    """The core command finds the MCP adapter's draft through its entry point (the core never imports it)."""
    done = subprocess.run(
        [sys.executable, "-m", "guard", "policy", "init", "--team", "crm", "--", sys.executable, str(SERVER)],
        env=server_env(tmp_path / "effects.jsonl"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "crm.yaml").write_text(done.stdout)
    assert PolicySet.load_dir(folder).classify("crm", "create_invoice", {}).verdict is Verdict.APPROVE

    dead = subprocess.run(
        [
            sys.executable,
            "-m",
            "guard",
            "policy",
            "init",
            "--team",
            "crm",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(3)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dead.returncode == 1 and "could not read the tools" in dead.stderr and "Traceback" not in dead.stderr
    unknown = guard_cli("policy", "init", "--team", "crm", "--from", "nope", "--", "true")
    assert unknown.returncode == 2 and "no policy source 'nope'" in unknown.stderr


def test_guard_policy_init_without_a_source_prints_a_skeleton_that_denies_everything(tmp_path: Path) -> None:
    done = guard_cli("policy", "init", "--team", "ops")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "ops.yaml").write_text(done.stdout)
    assert guard_cli("policy", "validate", str(folder / "ops.yaml")).returncode == 0
    policies = PolicySet.load_dir(folder)
    assert policies.classify("ops", "billing.refund", {}).verdict is Verdict.DENY
