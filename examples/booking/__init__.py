"""A booking through a real OpenAI Agents SDK agent with guard_openai_agents; run `examples/booking/run.py`."""
