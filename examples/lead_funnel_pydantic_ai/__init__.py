"""Lead funnel through a real Pydantic AI agent with ToolGuard; run `examples/lead_funnel_pydantic_ai/run.py`."""
