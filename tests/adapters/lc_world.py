"""The lead funnel (`funnel_world`) with its tools as real LangChain tools."""

from __future__ import annotations

from funnel_world import NAMES
from funnel_world import Funnel as FunnelSystems
from langchain_core.tools import BaseTool, tool

__all__ = ["NAMES", "Funnel"]


class Funnel(FunnelSystems):
    def tools(self) -> list[BaseTool]:
        return [tool(fn) for fn in self.functions()]
