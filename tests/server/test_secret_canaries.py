"""Canary secrets of every JSON type, sent in arguments and echoed in errors and results, are found on no
surface: the ledger (on SQLite the file and its WAL byte for byte; on PostgreSQL every value of every table), the
debug logs, the API over HTTP, the reviewer page, webhook bodies,
`/metrics`, every `--json` output of the CLI, and the text of every exception the agent got.

Team `vault` (written here) declares the canaries' fields secret. A real Guard on the service's ledger file
makes the calls; a real uvicorn serves the approval service; a real HTTP server on loopback takes the
webhooks; the CLI runs through typer's runner on the same ledger.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from loopback import Receiver, receiving
from server_support import Service, ledger_contents
from typer.testing import CliRunner

from guard import ApprovalPending, ArgumentsRefused, CallFailed, Guard
from guard.cli import app as cli
from guard.notify import Notifier
from guard.policy import PolicySet

VAULT = """\
team: vault
secrets: [pin, card, ratio, flag, nothing, codes, profile]
reviewers:
  rita: [finance]
notify:
  webhook_env: VAULT_WEBHOOK_URL
  secret_env: VAULT_WEBHOOK_KEY
rules:
  - name: lookup
    tools: [vault.lookup]
    class: read
  - name: fails
    tools: [vault.fails]
    class: compensable
    on_failure: halt
  - name: charge
    tools: [vault.charge]
    class: irreversible
    approval: {roles: [finance], expires_after: 1h}
"""

STR = "cnry-str-Q7x9Zk2"
INT = 90071992547  # within +/-2**53: hashed, and scrubbed wherever its digits appear
BIG = 4111111111111111117  # a 19-digit card number: beyond +/-2**53, refused, never quoted
FLOAT = 27182.818284
LIST_STR, LIST_INT = "cnry-list-A1b2", 6180339887
OBJ_STR, OBJ_FLOAT = "cnry-obj-P0q9", 1414.21356
SECRET_KEYS = {"pin", "card", "ratio", "flag", "nothing", "codes", "profile"}
# What must appear nowhere: every canary in the forms a program writes it (JSON, str, repr).
CANARIES = [STR, str(INT), str(BIG), repr(FLOAT), LIST_STR, str(LIST_INT), OBJ_STR, repr(OBJ_FLOAT)]


def canary_args(**more: Any) -> dict[str, Any]:
    return {
        "account": "acct-visible",
        "pin": STR,
        "card": INT,
        "ratio": FLOAT,
        "flag": True,
        "nothing": None,
        "codes": [LIST_STR, LIST_INT],
        "profile": {"part": OBJ_STR, "score": OBJ_FLOAT},
        **more,
    }


def quoted() -> str:
    """A message that quotes every canary, as a careless API error or result would."""
    return (
        f"account acct-visible pin={STR} card={INT} ratio={FLOAT} codes={LIST_STR},{LIST_INT} "
        f"profile={OBJ_STR}/{OBJ_FLOAT}"
    )


@pytest.fixture
def service_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "vault-policies"
    folder.mkdir()
    (folder / "vault.yaml").write_text(VAULT)
    return folder


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving("/hooks/vault") as got:
        yield got


def hits(surface: str) -> list[str]:
    return [c for c in CANARIES if c in surface]


def unredacted_secret_fields(value: Any, path: str = "") -> list[str]:
    """Paths of secret-named fields (any JSON type, booleans and null included) not shown as [REDACTED]."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in cast(dict[str, Any], value).items():
            if key in SECRET_KEYS and item != "[REDACTED]":
                found.append(f"{path}.{key}")
            else:
                found += unredacted_secret_fields(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(cast(list[Any], value)):
            found += unredacted_secret_fields(item, f"{path}[{i}]")
    elif isinstance(value, str) and value.startswith(("{", "[")):
        with contextlib.suppress(ValueError):  # text that only looks like JSON
            found += unredacted_secret_fields(json.loads(value), path + "(json)")
    return found


def test_canary_secrets_of_every_json_type_appear_on_no_surface(
    service: Service,
    service_policies: Path,
    live_url: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VAULT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("VAULT_WEBHOOK_KEY", "whsec-vault-0123456789")
    guard = Guard(policies=service_policies, db=service.url, actor="vault-agent", approval="defer", log_level="debug")
    errors: list[BaseException] = []

    def lookup(**kw: Any) -> dict[str, Any]:  # echoes every canary: in text, as numbers, as a key, nested
        return {
            "echo": quoted(),
            "card_again": INT,
            "ratio_again": FLOAT,
            STR: "as a key",
            "nested": [{"deep": f"x{LIST_STR}y", "n": LIST_INT}],
            "copy": {"part": OBJ_STR, "s": OBJ_FLOAT},
            "flag": True,
        }

    def fails(**kw: Any) -> None:
        raise RuntimeError("gateway refused: " + quoted())

    def charge(**kw: Any) -> dict[str, str]:
        return {"charge_id": "ch_1"}

    tools = {
        name: guard.tool(fn, name=f"vault.{name}")
        for name, fn in (("lookup", lookup), ("fails", fails), ("charge", charge))
    }
    with guard.run("vault", subject="canaries") as run:
        result = tools["lookup"](**canary_args())
        assert result["echo"] == quoted()  # the agent itself gets the tool's real result
        with pytest.raises(ArgumentsRefused) as refused:
            tools["lookup"](**canary_args(card=BIG, more=1))
        errors.append(refused.value)
        with pytest.raises(CallFailed) as failed:
            tools["fails"](**canary_args())
        errors.append(failed.value)
    assert refused.value.limit == "json" and "card is an integer beyond" in refused.value.reason
    with pytest.raises(ValueError, match="the agent gave up"), guard.run("vault", subject="agent-error"):  # one run
        tools["lookup"](**canary_args(account="acct-2"))
        raise ValueError("the agent gave up on " + quoted())
    with pytest.raises(ApprovalPending) as pending, guard.run("vault", subject="held"):
        tools["charge"](**canary_args())
    errors.append(pending.value)
    guard.close()
    approval_id = pending.value.approval_id

    surfaces: dict[str, str] = {}
    surfaces["exceptions"] = " | ".join(f"{e} {getattr(e, 'fields', {})!r}" for e in errors)
    notifier = Notifier(service.ledger, PolicySet.load_dir(service_policies), live_url, backoff=0.01, timeout=2)
    assert notifier.deliver().sent == 3  # the approval waiting and the two runs that stopped
    surfaces["webhooks"] = " | ".join(body.decode() for body in receiver.raw)

    rita = service.ledger.create_token("rita", by="test")[1]
    with httpx.Client(base_url=live_url, headers={"Authorization": f"Bearer {rita}"}) as http:
        api = [
            http.get(path)
            for path in ("/api/approvals", f"/api/approvals/{approval_id}", "/api/runs", f"/api/runs/{run.run_id}")
        ]
        api += [http.get(f"/api/runs/{r['run_id']}") for r in api[2].json()]
        assert all(r.status_code == 200 for r in api), [r.text for r in api if r.status_code != 200]
        surfaces["api"] = " | ".join(r.text for r in api)
        surfaces["metrics"] = http.get("/metrics").text
    with httpx.Client(base_url=live_url) as browser:
        assert browser.post("/login", data={"token": rita}).status_code == 303
        pages = [browser.get("/"), browser.get(f"/approvals/{approval_id}")]
        assert all(p.status_code == 200 for p in pages) and "vault.charge" in pages[1].text
        surfaces["pages"] = " | ".join(p.text for p in pages)

    runner = CliRunner()
    db = ["--db", service.url]
    commands = [
        ["runs", "list", *db],
        *[["runs", "show", r["run_id"], *db] for r in api[2].json()],
        ["approvals", "list", *db],
        ["approvals", "show", approval_id, *db],
        ["notifications", "list", *db],
        ["tokens", "list", *db],
        ["ledger", "verify", *db],
        ["pauses", *db],
        ["policy", "explain", "vault.lookup", "--team", "vault", "--args", json.dumps(canary_args())],
    ]
    outputs: list[str] = []
    for command in commands:
        out = runner.invoke(cli, [*command, "--json"], env={"GUARD_POLICY_DIR": str(service_policies)})
        assert out.exit_code == 0, (command, out.output)
        outputs.append(out.output)
    surfaces["cli"] = " | ".join(outputs)

    logs = capfd.readouterr()
    surfaces["logs"] = logs.err + logs.out
    assert "call completed" in surfaces["logs"] and "call failed" in surfaces["logs"]  # debug logs were written
    surfaces["ledger"] = ledger_contents(service.ledger)

    # The surfaces hold the story (a search for nothing finds nothing) ...
    assert "acct-visible" in surfaces["ledger"] and "acct-visible" in surfaces["api"]
    assert "gateway refused" in surfaces["api"] and "gateway refused" in surfaces["cli"]
    assert "the agent gave up on" in surfaces["ledger"] and "vault.charge" in surfaces["webhooks"]
    # ... and no canary, in any form, on any of them.
    assert {name: hits(text) for name, text in surfaces.items() if hits(text)} == {}
    # The canaries that cannot be searched by value (true, null) are redacted wherever their field shows.
    for name in ("api", "cli"):
        for text in surfaces[name].split(" | "):
            assert unredacted_secret_fields(json.loads(text)) == [], name
    assert '"flag":true' not in surfaces["ledger"] and '"nothing":null' not in surfaces["ledger"]
