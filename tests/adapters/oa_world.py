"""The lead funnel (`funnel_world`) with its tools as real Agents SDK function tools.

`notify_sales` is an `async def` here, so both ways the SDK runs a function (awaited, or sync in a worker thread)
go through Guard."""

from __future__ import annotations

from agents import FunctionTool, function_tool
from funnel_world import NAMES
from funnel_world import Funnel as FunnelSystems

__all__ = ["NAMES", "Funnel"]


class Funnel(FunnelSystems):
    async def notify_sales_async(self, deal_id: str) -> str:
        """Tell the sales channel about a new deal."""
        return self.notify_sales(deal_id)

    def tools(self) -> list[FunctionTool]:
        tools = {t.name: t for t in (function_tool(fn) for fn in self.functions())}
        tools["notify_sales"] = function_tool(self.notify_sales_async, name_override="notify_sales")  # same place
        return list(tools.values())
