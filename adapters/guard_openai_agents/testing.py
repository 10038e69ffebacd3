"""`ScriptedModel`: an Agents SDK `Model` that plays a script of turns, for tests and offline examples.

Turn n answers the conversation that already holds n model turns, so the script is a pure function of the
conversation: a resumed run (from a `RunState`) or a run delivered again gets the same answer at the same point,
as a real model would be asked the same question. A step is a list of output items (`calls(...)`,
`[message(...)]`) or a function of the input items so far (to react to a tool's output, e.g. a `[guard]` one).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, cast

from agents import (
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    Tool,
    TResponseInputItem,
    Usage,
)
from agents.items import TResponseOutputItem, TResponseStreamEvent
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_prompt_param import ResponsePromptParam

__all__ = ["ScriptedModel", "Step", "calls", "function_call", "message", "tool_outputs"]

Step = list[TResponseOutputItem] | Callable[[list[TResponseInputItem]], list[TResponseOutputItem]]


def function_call(name: str, args: Mapping[str, Any], call_id: str) -> ResponseFunctionToolCall:
    """One function call as the model emits it (`arguments` is JSON text, `call_id` the SDK's tool call id)."""
    return ResponseFunctionToolCall(
        type="function_call",
        name=name,
        arguments=json.dumps(dict(args)),
        call_id=call_id,
        id=f"fc_{call_id}",
        status="completed",
    )


def calls(*function_calls: ResponseFunctionToolCall) -> list[TResponseOutputItem]:
    """One model turn asking for these function calls."""
    return list(function_calls)


def message(text: str) -> ResponseOutputMessage:
    """One assistant message (a turn made of it ends the run: it is the final output)."""
    return ResponseOutputMessage(
        type="message",
        id="msg_scripted",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def _get(item: Any, key: str) -> Any:
    return cast(Mapping[str, Any], item).get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def _is_model_item(item: Any) -> bool:
    return _get(item, "type") in ("function_call", "reasoning") or _get(item, "role") == "assistant"


def model_turns(items: Sequence[Any]) -> int:
    """How many model turns the input holds: runs of consecutive model-made items (a turn may ask for several
    function calls at once; the tool outputs that follow it end it)."""
    turns, inside = 0, False
    for item in items:
        mine = _is_model_item(item)
        turns += mine and not inside
        inside = mine
    return turns


def tool_outputs(items: Sequence[Any]) -> dict[str, str]:
    """The outputs the model has been given so far, by tool call id (what a step function usually reads)."""
    return {str(_get(i, "call_id")): str(_get(i, "output")) for i in items if _get(i, "type") == "function_call_output"}


class ScriptedModel(Model):
    """Answers turn n with `script[n]`; past the end of the script it answers `[message(final)]`."""

    def __init__(self, script: Sequence[Step], *, final: str = "done") -> None:
        self.script = list(script)
        self.final = final

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        items: list[TResponseInputItem] = [] if isinstance(input, str) else list(input)
        turn = model_turns(items)
        step: Step = self.script[turn] if turn < len(self.script) else [message(self.final)]
        output = step(items) if callable(step) else step
        return ModelResponse(output=list(output), usage=Usage(), response_id=None)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("ScriptedModel answers Runner.run / run_sync, not run_streamed")
