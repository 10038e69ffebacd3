"""`run_cases`: a team's own expectations, checked against its policy, with what differed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.policy import run_cases

BILLING_TEXT = (Path(__file__).parent / "data" / "billing.yaml").read_text()


def _write(tmp_path: Path, cases: str) -> Path:
    (tmp_path / "billing.yaml").write_text(BILLING_TEXT)
    (tmp_path / "billing.cases.yaml").write_text(cases)
    return tmp_path / "billing.yaml"


def test_passing_and_failing_cases_are_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
cases:
  - {tool: billing.create_invoice, args: {amount_cents: 60000}, expect: approve, class: compensable,
     rule: big-invoice}
  - tool: billing.create_invoice
    args: {amount_cents: 60000}
    expect: allow
    rule: invoice
  - {tool: billing.create_invoice, args_json: '{"amount_cents": 6e4}', expect: approve}
""",
    )
    report = run_cases(path)
    assert [r.passed for r in report.results] == [True, False, True]
    failure = report.failures[0]
    assert failure.line == 4
    assert failure.differences == ("expected allow, got approve", "expected rule invoice, got big-invoice")
    assert not report.passed


def test_a_case_naming_an_unknown_rule_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "cases:\n  - {tool: a, expect: deny}\n  - {tool: a, expect: deny, rule: nope}\n")
    with pytest.raises(
        PolicyError, match=re.escape("billing.cases.yaml:3: cases[1].rule: the policy has no rule 'nope'")
    ):
        run_cases(path)


def test_cases_files_use_the_same_strict_loader(tmp_path: Path) -> None:
    path = _write(tmp_path, "cases:\n  - {tool: a, expect: maybe}\n")
    with pytest.raises(PolicyError, match=re.escape(":2: cases[0].expect")):
        run_cases(path)


def test_a_missing_cases_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "billing.yaml").write_text(BILLING_TEXT)
    with pytest.raises(PolicyError, match="no such file"):
        run_cases(tmp_path / "billing.yaml")
