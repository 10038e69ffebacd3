"""`ScriptedChatModel`: a LangChain chat model that plays a script of turns, for tests and offline examples.

Turn n answers the conversation that already holds n AI messages, so the script is a pure function of the
conversation: a resumed or re-run agent gets the same answer for the same point, as a real model would be
asked the same question. A step is an `AIMessage` or a function of the messages so far (to react to a tool's
answer, e.g. an error tool message).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

__all__ = ["ScriptedChatModel", "Step", "tool_call", "tool_calls"]

Step = AIMessage | Callable[[Sequence[BaseMessage]], AIMessage]


def tool_call(name: str, args: dict[str, Any], call_id: str) -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


def tool_calls(*calls: ToolCall, content: str = "") -> AIMessage:
    """One AI turn asking for these tool calls."""
    return AIMessage(content=content, tool_calls=list(calls))


class ScriptedChatModel(BaseChatModel):
    """Answers turn n with `script[n]`; past the end of the script it answers `final`. Binding tools is a no-op."""

    script: list[Any]  # list[Step]; pydantic cannot validate callables in a union, so the field is loose
    final: str = "done"

    @property
    def _llm_type(self) -> str:
        return "guard-scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = sum(isinstance(m, AIMessage) for m in messages)
        step: Step = self.script[turn] if turn < len(self.script) else AIMessage(content=self.final)
        message = step if isinstance(step, AIMessage) else step(messages)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self
