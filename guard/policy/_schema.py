# pyright: strict
"""The JSON Schema of the policy file format, for editors (`guard policy schema`)."""

from __future__ import annotations

from typing import Any

from guard.policy._spec import PolicySpec

__all__ = ["policy_json_schema"]


def policy_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of `policies/<team>.yaml`, generated from the validated model.

    Conditions that span fields (irreversible needs approval, quorum within reviewers, no retries on
    classes that are not repeat-safe) are not expressible here; `guard policy validate` checks them.
    """
    schema = PolicySpec.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://guard.dev/policy.schema.json",
        **schema,
    }
