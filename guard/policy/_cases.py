# pyright: strict
"""Policy tests written by the policy owner: `policies/<team>.cases.yaml` next to the policy.

Each case is a call and the decision it must get. `run_cases` loads both files (the cases file with the
same line-numbered loader as policies), classifies every case and reports what differed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.errors import PolicyError
from guard.policy._load import load_policy, parse_model, read_text
from guard.policy._spec import CasesFile, CaseSpec
from guard.policy._types import Decision

__all__ = ["CaseReport", "CaseResult", "cases_path", "run_cases"]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case: where it is, what was expected, what the policy decided, and what differed."""

    index: int
    line: int | None
    name: str
    tool: str
    args: dict[str, Any]
    expected: str
    decision: Decision
    differences: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when the decision matched every expectation of the case."""
        return not self.differences


@dataclass(frozen=True, slots=True)
class CaseReport:
    """The outcome of one team's cases file."""

    team: str
    policy_file: str
    cases_file: str
    results: tuple[CaseResult, ...]

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        """The cases whose decision differed from the expectation."""
        return tuple(result for result in self.results if not result.passed)

    @property
    def passed(self) -> bool:
        """True when every case passed."""
        return not self.failures


def cases_path(policy_path: str | Path) -> Path:
    """`policies/billing.yaml` -> `policies/billing.cases.yaml`."""
    path = Path(policy_path)
    return path.with_name(path.name.removesuffix(path.suffix) + ".cases" + (path.suffix or ".yaml"))


def run_cases(policy_path: str | Path) -> CaseReport:
    """Classify every case of the policy's sibling cases file and compare.

    Raises:
        PolicyError: the policy or the cases file is invalid or missing, a case's `args_json` is not a JSON
            object, a case names a rule the policy does not have, or a case gives both or none of
            `args` and `args_json`.
    """
    policy = load_policy(policy_path)
    source = str(cases_path(policy_path))
    text, _ = read_text(source)
    spec, doc = parse_model(text, source, CasesFile)
    rules = {rule.name for rule in policy.rules}
    results: list[CaseResult] = []
    for index, case in enumerate(spec.cases):
        at = ("cases", index)
        line = doc.line_of(at)
        args = _args(case, source, doc.line_of((*at, "args_json")), f"cases[{index}]")
        if case.rule is not None and case.rule not in rules:
            raise PolicyError(
                file=source,
                line=doc.line_of((*at, "rule")),
                field=f"cases[{index}].rule",
                reason=f"the policy has no rule {case.rule!r}: use one of {', '.join(sorted(rules))}",
            )
        decision = policy.classify(case.tool, args)
        results.append(
            CaseResult(
                index,
                line,
                case.name or f"{case.tool} -> {case.expect}",
                case.tool,
                args,
                case.expect,
                decision,
                _differences(case, decision),
            )
        )
    return CaseReport(policy.team, policy.source, source, tuple(results))


def _args(case: CaseSpec, source: str, line: int | None, field: str) -> dict[str, Any]:
    if case.args is not None and case.args_json is not None:
        raise PolicyError(
            file=source, line=line, field=f"{field}.args_json", reason="give `args` or `args_json`, not both"
        )
    if case.args_json is None:
        return dict(case.args or {})
    try:
        value: Any = json.loads(case.args_json, parse_constant=lambda name: {"NaN": math.nan}.get(name, math.inf))
    except ValueError as exc:
        raise PolicyError(
            file=source,
            line=line,
            field=f"{field}.args_json",
            reason=f"not valid JSON ({exc}): fix the JSON text",
        ) from None
    if not isinstance(value, dict):
        raise PolicyError(
            file=source,
            line=line,
            field=f"{field}.args_json",
            reason='the JSON must be an object of arguments: write {"name": value, ...}',
        )
    return value  # pyright: ignore[reportUnknownVariableType]


def _differences(case: CaseSpec, decision: Decision) -> tuple[str, ...]:
    out: list[str] = []
    if decision.verdict != case.expect:
        out.append(f"expected {case.expect}, got {decision.verdict}")
    if case.class_ is not None and decision.side_effect != case.class_:
        out.append(f"expected class {case.class_}, got {decision.side_effect}")
    if case.rule is not None and decision.rule != case.rule:
        out.append(f"expected rule {case.rule}, got {decision.rule}")
    return tuple(out)
