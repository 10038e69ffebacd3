# pyright: strict
"""`PolicySet`: the policies of every team in one directory, held side by side in one process.

A broken file does not stop the others: its team is kept with its error and every call of that team is
denied with a reason that names the error, until the file is fixed and the set reloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guard.errors import PolicyError
from guard.identity import identity
from guard.policy._load import load_policy
from guard.policy._policy import Policy
from guard.policy._types import NO_RETRY, Decision, OnFailure, Verdict

__all__ = ["PolicySet", "policy_files"]


def policy_files(directory: str | Path) -> list[Path]:
    """The policy files of a directory, sorted: every `*.yaml` but the `*.cases.yaml` beside them.

    Raises:
        OSError: the directory cannot be listed.
    """
    return sorted(p for p in Path(directory).iterdir() if p.suffix == ".yaml" and not p.name.endswith(".cases.yaml"))


def _names_spelled_twice(policies: Mapping[str, Policy]) -> dict[str, PolicyError]:
    """Teams (after the first, in file order) naming a reviewer whose name normalises like another team's but is
    spelled otherwise (`Alice` here, `alice` there): one token would act as both, so the name must be one person.
    """
    first: dict[str, tuple[str, Policy]] = {}
    errors: dict[str, PolicyError] = {}
    for team, policy in policies.items():
        for name in policy.reviewers:
            spelled, where = first.setdefault(identity(name), (name, policy))
            if spelled != name and team not in errors:
                errors[team] = PolicyError(
                    file=policy.source,
                    line=policy.reviewer_line(name),
                    field=f"reviewers.{name}",
                    reason=f"{where.source} names this reviewer {spelled!r}: names are compared without case, "
                    "surrounding spaces or Unicode width, so both would be one person; spell the name the same in "
                    "every team (or give the other person a name of their own)",
                )
    return errors


def _slack_users_shared(policies: Mapping[str, Policy]) -> dict[str, PolicyError]:
    """Teams (after the first, in file order) whose Slack app maps a Slack user to another reviewer name than an
    earlier team's does. A Slack click acts as the name the approval's team gives its user: one person would be
    two reviewers (approving what the other name asked, acting for a team the first name is not in).
    """
    first: dict[str, tuple[str, Policy]] = {}
    errors: dict[str, PolicyError] = {}
    for team, policy in policies.items():
        users: Mapping[str, str] = policy.slack.users if policy.slack is not None else {}
        for user, name in users.items():
            other, where = first.setdefault(user, (name, policy))
            if identity(other) != identity(name) and team not in errors:
                line = where.reviewer_line(other)
                errors[team] = PolicyError(
                    file=policy.source,
                    line=policy.reviewer_line(name),
                    field=f"reviewers.{name}.slack",
                    reason=f"Slack user {user} is {name!r} here, and {where.source}"
                    f"{'' if line is None else f':{line}'} gives it to reviewer {other!r}: a click in Slack would "
                    "act as either, one person as two reviewers; give each person one Slack id under one name in "
                    "every team (fix the id that is wrong, or name the reviewer the same in both files)",
                )
    return errors


class PolicySet:
    """Policies by team. Immutable after construction; build a new set to reload.

    Attributes:
        directory: Where the files were read from, or None for a set built in code.
        policies: Team -> loaded policy, for the teams whose file is valid.
        errors: Team -> the `PolicyError` of its file, for the teams whose file is broken.
        teams: Every team the set knows, healthy or broken, sorted.
    """

    __slots__ = ("directory", "errors", "policies", "teams")

    def __init__(
        self,
        policies: Mapping[str, Policy],
        errors: Mapping[str, PolicyError] | None = None,
        directory: str | Path | None = None,
    ) -> None:
        self.policies: Mapping[str, Policy] = dict(policies)
        self.errors: Mapping[str, PolicyError] = dict(errors or {})
        self.teams: tuple[str, ...] = tuple(sorted({*self.policies, *self.errors}))
        self.directory: str | None = None if directory is None else str(directory)

    @classmethod
    def load_dir(cls, directory: str | Path) -> PolicySet:
        """Load every `*.yaml` of `directory` except `*.cases.yaml`; the team of a file is its stem.

        Raises:
            PolicyError: only when the directory itself cannot be listed. Bad files are kept in `errors`.
        """
        try:
            files = policy_files(directory)
        except OSError as exc:
            raise PolicyError(
                file=str(directory),
                line=None,
                field="",
                reason=f"cannot list the policy directory ({exc.strerror or exc}): "
                f"set GUARD_POLICY_DIR or --policies to the folder of <team>.yaml files",
            ) from None
        policies: dict[str, Policy] = {}
        errors: dict[str, PolicyError] = {}
        for file in files:
            try:
                policies[file.stem] = load_policy(file)
            except PolicyError as exc:
                errors[file.stem] = exc
        for team, exc in _names_spelled_twice(policies).items():
            del policies[team]
            errors[team] = exc
        for team, exc in _slack_users_shared(policies).items():
            del policies[team]
            errors[team] = exc
        return cls(policies, errors, directory)

    def current(self) -> PolicySet:
        """This set: it never changes (`LivePolicies.current` is the one that follows the files)."""
        return self

    def get(self, team: str) -> Policy:
        """The policy of `team`.

        Raises:
            PolicyError: the team's file is broken (its own error), or there is no policy for the team.
        """
        policy = self.policies.get(team)
        if policy is not None:
            return policy
        raise self._error(team)

    def classify(self, team: str, tool: str, args: Mapping[str, Any]) -> Decision:
        """`Policy.classify` of the team; an unknown team or a broken policy gives a DENY naming why."""
        policy = self.policies.get(team)
        if policy is not None:
            return policy.classify(tool, args)
        reason = f"the policy of team {team!r} cannot be used, so every call is denied: {self._error(team)}"
        return Decision(
            team=team,
            tool=tool,
            verdict=Verdict.DENY,
            side_effect=None,
            rule=None,
            reason=reason,
            approval=None,
            retry=NO_RETRY,
            on_failure=OnFailure.HALT,
            secret_fields=frozenset(),
            policy_version="",
            matched=(),
        )

    def _error(self, team: str) -> PolicyError:
        error = self.errors.get(team)
        if error is not None:
            return error
        where = self.directory or "this policy set"
        known = ", ".join(self.teams) or "none"
        return PolicyError(
            file=str(Path(where) / f"{team}.yaml") if self.directory else where,
            line=None,
            field="team",
            reason=f"no policy for team {team!r} in {where} (known teams: {known}): "
            f"write {team}.yaml or use one of the known teams",
        )

    def __contains__(self, team: object) -> bool:
        return team in self.policies or team in self.errors

    def __repr__(self) -> str:
        return f"PolicySet(teams={self.teams!r}, broken={sorted(self.errors)!r})"
