"""The lead funnel (`funnel_world`) with its tools as a Pydantic AI `FunctionToolset`."""

from __future__ import annotations

from typing import Any

from funnel_world import NAMES
from funnel_world import Funnel as FunnelSystems
from pydantic_ai.toolsets import FunctionToolset

__all__ = ["NAMES", "Funnel"]


class Funnel(FunnelSystems):
    def toolset(self) -> FunctionToolset[Any]:
        return FunctionToolset(self.functions())
