"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, tests/adapters/conformance/, pinned),
its server scenarios (`--suite all`), against our reference server (tests/adapters/mcp_reference_server.py):
once directly, once through `python -m guard_mcp` over streamable HTTP with the reference server behind it over
streamable HTTP, and once with it behind over stdio; the proxy's policy lets every tool and resource through as a
`read`. Every scenario that passes directly passes through the proxy; the table is printed (`pytest -s`).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from mcp_reference_world import http_proxy, http_reference, write_open_policy
from mcp_world import ledger_calls, processes

SUITE = Path(__file__).with_name("conformance")
CLI = SUITE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")

Outcome = tuple[int, int]  # checks passed, checks failed


@pytest.fixture(scope="module")
def suite() -> Path:
    subprocess.run([str(SUITE / "ensure")], check=True, timeout=600)
    return CLI


def run_suite(cli: Path, url: str, out: Path) -> dict[str, Outcome]:
    """Every server scenario of the suite against `url`: checks passed and failed per scenario."""
    subprocess.run(
        ["node", str(cli), "server", "--url", url, "--suite", "all", "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=SUITE,
    )
    outcomes: dict[str, Outcome] = {}
    for checks_file in sorted(out.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        assert match is not None, checks_file
        statuses = [c["status"] for c in json.loads(checks_file.read_text())]
        outcomes[match["scenario"]] = (statuses.count("SUCCESS"), statuses.count("FAILURE"))
    return outcomes


def table(runs: dict[str, dict[str, Outcome]]) -> str:
    names = sorted({name for outcomes in runs.values() for name in outcomes})
    head = f"{'scenario':36}" + "".join(f"{label:>22}" for label in runs)
    rows = [head]
    for name in names:
        cells: list[str] = []
        for outcomes in runs.values():
            passed, failed = outcomes.get(name, (0, 0))
            cells.append(f"{'pass' if name in outcomes and not failed else 'FAIL'} {passed}/{passed + failed}")
        rows.append(f"{name:36}" + "".join(f"{cell:>22}" for cell in cells))
    totals: list[str] = []
    for outcomes in runs.values():
        ok = sum(1 for passed_failed in outcomes.values() if not passed_failed[1])
        checks = sum(p for p, _ in outcomes.values())
        all_checks = sum(p + f for p, f in outcomes.values())
        totals.append(f"{ok}/{len(outcomes)} ({checks}/{all_checks})")
    rows.append(f"{'scenarios passed (checks)':36}" + "".join(f"{t:>22}" for t in totals))
    return "\n".join(rows)


# The suite's client (the TypeScript SDK's) opens a streamable HTTP session per scenario and never ends it (no
# DELETE): each keeps its upstream session, and its place under --max-sessions, until the SDK's idle timeout. The
# default bound (64) holds the whole suite's 32 scenarios: a client that abandons its sessions this way is common.
EVERY_SCENARIO: tuple[str, ...] = ()


def test_every_conformance_scenario_that_passes_directly_passes_through_the_proxy_with_either_upstream(
    suite: Path, tmp_path: Path, db_path: Path
) -> None:
    policies = write_open_policy(tmp_path / "policies")
    runs: dict[str, dict[str, Outcome]] = {}
    with processes(tmp_path) as procs:
        reference = http_reference(procs)
        runs["direct"] = run_suite(suite, reference.url, tmp_path / "direct")
        proxy = http_proxy(procs, policies, db_path, "conformance-http", reference.url, *EVERY_SCENARIO)
        runs["proxy, http upstream"] = run_suite(suite, proxy.url, tmp_path / "via-http")
    with processes(tmp_path) as procs:
        proxy = http_proxy(procs, policies, tmp_path / "stdio.db", "conformance-stdio", "stdio", *EVERY_SCENARIO)
        runs["proxy, stdio upstream"] = run_suite(suite, proxy.url, tmp_path / "via-stdio")
    print("\n" + table(runs))
    direct = runs["direct"]
    assert len(direct) >= 30 and all(not failed for _, failed in direct.values()), table(runs)
    for label in ("proxy, http upstream", "proxy, stdio upstream"):
        lost = [name for name, (_, failed) in direct.items() if not failed and runs[label].get(name, (0, 1))[1]]
        missing = [name for name in direct if name not in runs[label]]
        assert not lost and not missing, f"{label}: {lost or missing}\n{table(runs)}"


GUARDED_POLICY = """\
team: ref
description: the reference server behind the proxy, some tools held or denied (tests)
reviewers:
  maria: [sales]
rules:
  - name: reads
    tools: [test_simple_text, "resource:test://static-text"]
    class: read
  - name: no-images
    tools: [test_image_content]
    deny: images are not for this agent
  - name: audio
    tools: [test_audio_content]
    class: irreversible
    approval: {roles: [sales], expires_after: 1h}
"""


def test_the_suites_client_through_the_proxy_meets_a_denial_a_wait_for_approval_and_a_denied_resource_as_documented(
    suite: Path, tmp_path: Path, db_path: Path
) -> None:
    """As adapters/README.md says: a refused or held tool call is a tool error result `[guard] <reason>` with
    Guard's outcome in `_meta["guard/outcome"]`; a denied read is a JSON-RPC error with it in `data`."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ref.yaml").write_text(GUARDED_POLICY)
    with processes(tmp_path) as procs:
        proxy = http_proxy(procs, policies, db_path, "guarded", "stdio")
        done = subprocess.run(
            ["node", str(SUITE / "guarded.mjs"), proxy.url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=SUITE,
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["allowed"]["result"]["content"][0]["text"] == "This is a simple text response for testing."
    for step, outcome in (("denied", "CallDenied"), ("waiting", "ApprovalPending")):
        result = out[step]["result"]
        assert result["isError"] is True and result["content"][0]["text"].startswith("[guard] ")
        assert result["_meta"]["guard/outcome"]["outcome"] == outcome
    assert "approval_id" in out["waiting"]["result"]["_meta"]["guard/outcome"]
    assert out["resource"]["result"]["contents"][0]["text"].startswith("This is the content")
    refused = out["deniedResource"]["error"]
    assert "[guard] " in refused["message"] and refused["data"]["guard/outcome"]["outcome"] == "CallDenied"
    assert [state for _, state in ledger_calls(policies, f"sqlite:///{db_path}", "ref:guarded")] == [
        "completed",
        "denied",
        "awaiting_approval",
        "completed",
        "denied",
    ]
