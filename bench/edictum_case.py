# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""Edictum's evaluation of the rule equivalent to bench/policies/bench.yaml's `big-invoice` rule.

Built with Edictum's own YAML ruleset API (Edictum.from_yaml_string): a `pre` rule on
billing.create_invoice that asks for approval when args.amount_cents > 50000. Measured with
Edictum.evaluate(tool, args), its documented dry-run evaluation (no tool is executed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RULESET = """\
apiVersion: edictum/v1
kind: Ruleset
metadata:
  name: bench-billing
defaults:
  mode: enforce
rules:
  - id: big-invoice
    type: pre
    tool: billing.create_invoice
    when:
      args.amount_cents:
        gt: 50000
    then:
      action: ask
      message: "Invoices over 500.00 need approval by finance."
"""


def version() -> str:
    from importlib.metadata import version as v

    return v("edictum")


def make_evaluator() -> Callable[[str, dict[str, Any]], Any]:
    from edictum import Edictum  # pyright: ignore[reportMissingImports]  # peer: only in .venv-bench

    guard = Edictum.from_yaml_string(RULESET)
    # Sanity: the rule must behave like Guard's policy on both sides of the threshold.
    small = guard.evaluate("billing.create_invoice", {"amount_cents": 100})
    big = guard.evaluate("billing.create_invoice", {"amount_cents": 60_000})
    if small.block_reasons or not big.block_reasons:
        raise RuntimeError(f"edictum rule misbehaves: small={small.decision} big={big.decision}")
    return guard.evaluate
