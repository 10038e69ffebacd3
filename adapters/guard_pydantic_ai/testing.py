"""`scripted_model`: a Pydantic AI `FunctionModel` that plays a script of turns, for tests and offline examples.

Turn n answers the conversation that already holds n model responses, so the script is a pure function of the
conversation: a resumed agent (`message_history=...`) or a run replayed from the start gets the same answer at
the same point, as a real model would be asked the same question. A step is a `ModelResponse` or a function of
the messages so far (to react to a tool's answer, e.g. a denied tool return).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

__all__ = ["Step", "scripted_model", "tool_call", "tool_calls"]

Step = ModelResponse | Callable[[Sequence[ModelMessage]], ModelResponse]


def tool_call(name: str, args: dict[str, Any], call_id: str) -> ToolCallPart:
    return ToolCallPart(tool_name=name, args=args, tool_call_id=call_id)


def tool_calls(*calls: ToolCallPart) -> ModelResponse:
    """One model turn asking for these tool calls."""
    return ModelResponse(parts=list(calls))


def scripted_model(script: Sequence[Step], *, final: str = "done") -> FunctionModel:
    """Answers turn n with `script[n]`; past the end of the script it answers the text `final`."""
    steps = list(script)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages)
        if turn >= len(steps):
            return ModelResponse(parts=[TextPart(final)])
        step = steps[turn]
        return step if isinstance(step, ModelResponse) else step(messages)

    return FunctionModel(respond)
