"""Arguments nested too deep or too large are denied with a typed reason and recorded, never a crash.

Limits are settings of `Guard` (`max_arg_depth`, default 64 levels, the arguments object being level 1;
`max_arg_bytes`, default 1 MiB of canonical JSON). Over a limit, the ledger keeps a placeholder, not the value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import Driver, Recorder

from guard import ArgumentsRefused, CallDenied, Guard, GuardUsageError


def nested(levels: int, leaf: Any = 1, *, kind: str = "list") -> Any:
    """`levels` containers, one inside the other, around `leaf`."""
    value = leaf
    for _ in range(levels):
        value = [value] if kind == "list" else {"k": value}
    return value


@pytest.mark.parametrize("leaf", [1, 1.5], ids=["integers", "floats"])  # floats take the reference encoder
@pytest.mark.parametrize("kind", ["list", "object"])
def test_arguments_nested_a_thousand_levels_deep_are_denied_recorded_and_never_run(
    driver: Driver, make_guard: Callable[..., Guard], leaf: Any, kind: str
) -> None:
    guard = make_guard()
    body = Recorder()
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run, pytest.raises(ArgumentsRefused) as refused:
        run.call(tool, customer_ref="c-1", blob=nested(1000, leaf, kind=kind))
    assert isinstance(refused.value, CallDenied)  # handled wherever a denial is
    assert refused.value.limit == "depth" and "more than 64 levels deep" in refused.value.reason
    assert body.calls == []
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "denied" and call.reason == refused.value.reason
    assert call.args == {"[not stored]": refused.value.reason}  # a placeholder, not a thousand levels


def test_arguments_at_the_depth_limit_run_and_one_level_deeper_are_refused(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    body = Recorder(result={"ok": True})
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run:
        assert run.call(tool, blob=nested(63)) == {"ok": True}  # 63 lists inside the arguments: 64 levels
        with pytest.raises(ArgumentsRefused) as refused:
            run.call(tool, blob=nested(64))
    assert "more than 64 levels deep" in refused.value.reason
    assert len(body.calls) == 1


def test_the_depth_limit_is_a_setting_of_guard(driver: Driver, make_guard: Callable[..., Guard]) -> None:
    guard = make_guard(max_arg_depth=3)
    body = Recorder(result={"ok": True})
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run:
        run.call(tool, blob=[[1]])  # the arguments, a list, a list: three levels
        with pytest.raises(ArgumentsRefused, match="more than 3 levels deep"):
            run.call(tool, blob=[[[1]]])
    assert body.calls == [{"blob": [[1]]}]


def test_arguments_over_the_size_limit_are_denied_and_their_content_is_not_stored(
    driver: Driver, make_guard: Callable[..., Guard], db_path: Path
) -> None:
    guard = make_guard(max_arg_bytes=4096)
    body = Recorder()
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run, pytest.raises(ArgumentsRefused) as refused:
        run.call(tool, blob="x" * 5000 + "END-OF-BLOB-MARKER")
    assert refused.value.limit == "size" and "over the 4096 Guard accepts" in refused.value.reason
    assert body.calls == []
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "denied" and set(call.args) == {"[not stored]"}
    guard.close()
    raw = b"".join(f.read_bytes() for f in db_path.parent.glob(db_path.name + "*"))
    assert b"END-OF-BLOB-MARKER" not in raw


def test_a_secret_field_nested_too_deep_is_refused_like_any_other_argument(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard()
    tool = driver.tool(guard, Recorder(), name="lab.flaky_read")
    with driver.run(guard, "lab") as run, pytest.raises(ArgumentsRefused) as refused:
        run.call(tool, api_key=nested(2000, "sk_live_deep_secret_value"))
    assert refused.value.limit == "depth" and "sk_live" not in str(refused.value)


@pytest.mark.parametrize("settings", [{"max_arg_depth": 0}, {"max_arg_bytes": 1}])
def test_limits_that_no_call_could_meet_are_a_usage_error(
    make_guard: Callable[..., Guard], settings: dict[str, int]
) -> None:
    with pytest.raises(GuardUsageError, match="max_arg_depth must be at least 1"):
        make_guard(**settings)


def test_an_argument_holding_a_lone_surrogate_is_refused_like_any_value_json_cannot_hold(
    driver: Driver, make_guard: Callable[..., Guard]
) -> None:
    """A str with a lone surrogate (what `surrogateescape` decoding of a file name or a process's output makes)
    has no UTF-8 form: the call is denied as `json`, naming the field, and runs nothing (it raised a bare
    UnicodeEncodeError and left the run halted with no call recorded)."""
    guard = make_guard()
    body = Recorder()
    tool = driver.tool(guard, body, name="lab.flaky_read")
    with driver.run(guard, "lab") as run, pytest.raises(ArgumentsRefused) as refused:
        run.call(tool, customer_ref="c-1", path="report-\udce9.csv")
    assert refused.value.limit == "json" and "path is a string that is not valid Unicode" in refused.value.reason
    assert body.calls == []
    [call] = guard.ledger.calls_of(run.run_id)
    assert call.state == "denied" and call.reason == refused.value.reason
