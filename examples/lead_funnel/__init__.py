"""Lead funnel through a real LangChain agent with GuardMiddleware; run `examples/lead_funnel/run.py`."""
